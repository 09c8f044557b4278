// The only module that talks to the network.
//
// The browser holds no tokens: the session is an HttpOnly cookie that fetch sends by itself (same-origin).
// Every state-changing request carries `X-CSRF: 1`, which a cross-site page cannot add without a CORS preflight
// the BFF never grants. Every error answer becomes an ApiError.
//
// Step-up is handled here, generically. Any request may come back with the RFC 9470 challenge
// (401 `insufficient_user_authentication`, also in WWW-Authenticate); the page does not need to know in advance
// which actions are privileged. When that happens, `request()` asks the registered challenge handler (the
// step-up dialog) to get a fresh second factor and then sends the *same* request again, once. (If the person first
// had to set up a second factor, the handler says "again": the request goes once more, and its new challenge is one
// they can answer.)

/** An error answer from the BFF, or a network failure (code "network_error", status 0). */
export class ApiError extends Error {
  constructor({ status = 0, code = "unknown_error", description = "", body = {}, cause } = {}) {
    super(description || code, cause ? { cause } : undefined);
    this.name = "ApiError";
    this.status = status; // HTTP status, 0 when no answer arrived
    this.code = code; // the body's `error` field
    this.description = description; // the body's `error_description` (English, for logs; messages.js has ours)
    this.body = body; // the whole body: attempts_remaining, retry_after, max_age, ...
    // When the answer arrived, on this browser's clock: a relative wait (retry_after) counts from here, so a browser
    // whose clock is off still waits exactly as long as the server asked (see dom.js's waitEnd).
    this.receivedAt = Date.now();
  }
}

const CHALLENGE = "insufficient_user_authentication";

let challengeHandler = null;
// The dialog in progress and what it answers: { key, promise }. Requests challenged for the same thing share it;
// one bound to another transaction waits its turn and gets a dialog of its own (one confirmation is for one request).
let challengeInFlight = null;

/**
 * Register the function that answers a step-up challenge:
 * `async ({ maxAge, description, action, transaction: { id, summary } | null }) => boolean | "again"`.
 * It resolves true once the user has stepped up, false if they gave up, "again" when they set up their first second
 * factor instead (the request is then sent again, and challenged anew); it may throw an ApiError (for instance
 * login_required when the session ended meanwhile).
 */
export function onStepUpChallenge(handler) {
  challengeHandler = handler;
}

/** The transaction a bound challenge carries (JSON body only: the summary is the person's own text). */
function transactionOf(body) {
  const transaction = body?.transaction;
  if (!transaction || typeof transaction.id !== "string" || typeof transaction.summary !== "string") return null;
  return { id: transaction.id, summary: transaction.summary };
}

async function answerChallenge(challenge) {
  const key = challenge.transaction?.id ?? "";
  while (challengeInFlight && challengeInFlight.key !== key) {
    await challengeInFlight.promise.catch(() => {});
  }
  if (!challengeInFlight) {
    const promise = Promise.resolve()
      .then(() => challengeHandler(challenge))
      .finally(() => {
        if (challengeInFlight?.promise === promise) challengeInFlight = null;
      });
    challengeInFlight = { key, promise };
  }
  return challengeInFlight.promise;
}

function isChallenge(response, body) {
  if (response.status !== 401) return false;
  // RFC 9470 puts the challenge in WWW-Authenticate; our BFF also puts it in the JSON body. The body says more: a
  // "reauthentication_required" carries the same header (a sign-in, not a second factor, is what is missing).
  if (typeof body?.error === "string") return body.error === CHALLENGE;
  const header = response.headers.get("WWW-Authenticate") ?? "";
  return header.includes(`error="${CHALLENGE}"`);
}

function maxAgeOf(response, body) {
  if (Number.isFinite(body?.max_age)) return body.max_age;
  const match = /max_age="?(\d+)/.exec(response.headers.get("WWW-Authenticate") ?? "");
  return match ? Number(match[1]) : null;
}

async function readBody(response) {
  if (response.status === 204) return null;
  const text = await response.text().catch(() => "");
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null; // e.g. an HTML error page from a proxy in front of the BFF
  }
}

/** One fetch. A rejected fetch (offline, server gone, connection reset) becomes ApiError("network_error"). */
async function send(path, init) {
  try {
    return await fetch(path, init);
  } catch (cause) {
    throw new ApiError({ code: "network_error", description: "The server could not be reached.", cause });
  }
}

function toError(response, body) {
  const code =
    typeof body?.error === "string" ? body.error : response.status >= 500 ? "server_error" : `http_${response.status}`;
  return new ApiError({
    status: response.status,
    code,
    description: typeof body?.error_description === "string" ? body.error_description : "",
    body: body && typeof body === "object" ? body : {},
  });
}

/**
 * Send a request and return the parsed JSON body (null for an empty answer); throw ApiError otherwise.
 * `challenge: false` turns off step-up handling (the step-up endpoints themselves use it).
 */
export async function request(method, path, { body, headers = {}, challenge = true } = {}) {
  // Build the request once. If a step-up challenge interrupts it, the retry below reuses this very object:
  // same body, same headers, and in particular the same Idempotency-Key. The retry is the same action as the
  // original, not a new one. The BFF remembers each action under its key, so whatever copies of it arrive (a
  // retry whose answer got lost on the way back and is then sent again, a request duplicated by a proxy, a
  // double click), at most one telegram is created and every copy gets that same telegram back.
  const init = {
    method,
    credentials: "same-origin",
    cache: "no-store",
    headers: { Accept: "application/json", ...headers },
  };
  if (method !== "GET" && method !== "HEAD") {
    init.headers["X-CSRF"] = "1";
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
  }

  let response = await send(path, init);
  let data = await readBody(response);

  // At most two dialogs, the first of which set up a second factor: a misbehaving server cannot loop us.
  for (let round = 0; challenge && challengeHandler && round < 2 && isChallenge(response, data); round += 1) {
    // Several requests may be challenged at once; those challenged for the same thing share one dialog.
    const answer = await answerChallenge({
      maxAge: maxAgeOf(response, data),
      description: data?.error_description,
      action: typeof data?.action === "string" ? data.action : null,
      transaction: transactionOf(data),
    });
    if (!answer) {
      throw new ApiError({
        status: 401,
        code: "step_up_cancelled",
        description: "The second factor was not completed.",
        body: data ?? {},
      });
    }
    response = await send(path, init);
    data = await readBody(response);
    // After a step-up, retry exactly once. A second challenge (say the window closed between the dialog and this
    // retry) is reported as an error, never answered with another dialog. Only after the person set up their first
    // factor ("again") is the new challenge answered: it is the first one they could answer.
    if (answer !== "again") break;
  }

  if (!response.ok) throw toError(response, data);
  return data;
}

const post = (path, body = {}, options = {}) => request("POST", path, { ...options, body });

/** A random UUID for Idempotency-Key (crypto.randomUUID needs a secure context; localhost and https are). */
export function newIdempotencyKey() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export const api = {
  session: () => request("GET", "/api/session"),
  /** Full-page navigation to FusionAuth's sign-in page; it comes back to `returnTo`. */
  signIn(returnTo = "/") {
    window.location.href = `/auth/login?return_to=${encodeURIComponent(returnTo)}`;
  },
  /**
   * Full-page navigation to FusionAuth's page asking for the password again (prompt=login, max_age=0). Only a
   * request: the BFF checks the sign-in's time in the ID token when the person comes back.
   */
  signInAgain(returnTo = "/") {
    window.location.href = `/auth/login?prompt=login&max_age=0&return_to=${encodeURIComponent(returnTo)}`;
  },
  /** Ends the session here; the answer names FusionAuth's logout URL, which the caller navigates to. */
  signOut: () => post("/auth/logout"),
  telegrams: () => request("GET", "/api/telegrams"),
  /** The security activity log, newest first; pass the answer's next_cursor for the page after. */
  activity: (cursor) =>
    request("GET", cursor ? `/api/activity?cursor=${encodeURIComponent(cursor)}` : "/api/activity"),
  /** This person's sessions (`current: true` for this one), and ending one or all of them. */
  sessions: () => request("GET", "/api/sessions"),
  endSession: (id) => request("DELETE", `/api/sessions/${encodeURIComponent(id)}`, { challenge: false }),
  /** Every session ends, this one too; the answer names FusionAuth's logout URL, as signOut's does. */
  signOutEverywhere: () => request("DELETE", "/api/sessions", { challenge: false }),
  sendTelegram: ({ recipient, message }, idempotencyKey) =>
    post("/api/telegrams", { recipient, message }, { headers: { "Idempotency-Key": idempotencyKey } }),
  /** Our own sign-in form, through the BFF (which alone talks to FusionAuth). No step-up handling on these. */
  nativeSignIn: {
    login: (loginId, password) =>
      post("/auth/native/login", { login_id: loginId, password }, { challenge: false }),
    send: (methodId) => post("/auth/native/two-factor/send", { method_id: methodId }, { challenge: false }),
    finish: (code, methodId) =>
      post(
        "/auth/native/two-factor/finish",
        methodId ? { code, method_id: methodId } : { code },
        { challenge: false },
      ),
  },
  /** The person's own second factors: list, add an authenticator app, remove one (which needs a step-up). */
  factors: {
    list: () => request("GET", "/api/factors"),
    startAuthenticator: () => post("/api/factors/authenticator/start"),
    confirmAuthenticator: (code, name) =>
      post("/api/factors/authenticator/confirm", name ? { code, name } : { code }, { challenge: false }),
    cancelAuthenticator: () => post("/api/factors/authenticator/cancel", {}, { challenge: false }),
    remove: (id, code) => request("DELETE", `/api/factors/${encodeURIComponent(id)}`, { body: { code } }),
  },
  stepUp: {
    /** With a transaction id (from the challenge), the step-up confirms that request and only it. */
    start: (transactionId) =>
      post("/api/step-up/start", transactionId ? { transaction_id: transactionId } : {}, { challenge: false }),
    send: (methodId) => post("/api/step-up/send", { method_id: methodId }, { challenge: false }),
    finish: (code, methodId) =>
      post("/api/step-up/finish", methodId ? { code, method_id: methodId } : { code }, { challenge: false }),
    cancel: () => post("/api/step-up/cancel", {}, { challenge: false }),
  },
};
