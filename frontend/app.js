// Wiring and state: which view is showing, the elevated badge, sending telegrams, the person's second factors,
// signing in and out.

import { api, ApiError, newIdempotencyKey, onStepUpChallenge } from "./api.js";
import { createSignInDialog, createStepUpDialog } from "./dialog.js";
import { createEnrolmentDialog, createRemovalDialog } from "./factors.js";
import { countdown, formatClock, secondsUntil } from "./dom.js";
import { errorMessage, nativeSignInMessage, SESSION_ENDED_MESSAGE, signInErrorMessage } from "./messages.js";
import { renderLoading, renderProblem, renderSignedIn, renderSignedOut } from "./views.js";

const main = document.getElementById("app");
const accountSlot = document.getElementById("account");

let view = null; // the signed-in view's controller, or null when signed out
let account = null; // the signed-in person's email, for the password form of a new sign-in
let signInWays = ["hosted"]; // from GET /api/session when signed out: "native" (our form), "hosted" (FusionAuth's page)
let stopBadge = () => {};
let recheckTimer = 0;

// The Idempotency-Key of the telegram being sent. It belongs to the *content* of the form, not to a click: if a
// send fails in a way where we can't know whether it got through (the network dropped after the request left),
// pressing Send again with the same text reuses the key, and the BFF answers with the telegram it already made
// instead of creating a second one. New text, or a confirmed success, gets a new key.
let pendingSend = null; // { key, recipient, message }

// ---- step-up ---------------------------------------------------------------------------------------------------
const dialog = createStepUpDialog({ api, canSetUp: true });
const signInDialog = createSignInDialog({ api });
const enrolment = createEnrolmentDialog({
  api,
  secondFactor: (challenge) => signInDialog.open({ challenge }),
  signInAgain,
});
const removal = createRemovalDialog({ api });

// Any request the BFF answers with the RFC 9470 challenge lands here (see api.js): we ask the person to confirm
// it's them, and api.js retries the original request once if we return true. Someone without a way to confirm may
// set up an authenticator app first ("again": api.js sends the request once more, and its new challenge is one they
// can answer). The dialog rejects when it could not go on (the session gone, a pause, no way to confirm): the
// request then fails with that reason, and the page says it in its own words.
onStepUpChallenge(async (challenge) => {
  const stepUp = await dialog.open(challenge);
  if (stepUp?.setUp) {
    const added = await enrolment.open({ account, then: true });
    loadFactors();
    if (added) return "again";
    // Not "you cancelled": what is still missing, which nobody can be blamed for.
    throw new ApiError({ status: 409, code: "no_second_factor", description: "No authenticator app was added." });
  }
  if (!stepUp) return false;
  showElevated(stepUp);
  return true;
});

// ---- a new sign-in on FusionAuth's page, in the middle of something ------------------------------------------
// Adding a second factor may need the person to sign in again on FusionAuth's page: a full-page trip. What they were
// doing (adding an authenticator app, perhaps in the middle of sending a telegram) waits in sessionStorage, this tab
// only, and is picked up when they come back to /?resume=enrol. It holds their own telegram text, never a secret.
const RESUME_KEY = "stepup-bff/resume";
const RESUME_TTL_MS = 15 * 60 * 1000;

function signInAgain() {
  const telegram = view?.busy && pendingSend ? { ...pendingSend } : null;
  sessionStorage.setItem(RESUME_KEY, JSON.stringify({ enrol: true, telegram, at: Date.now() }));
  api.signInAgain("/?resume=enrol");
}

/** What was interrupted by the trip to FusionAuth's page, once (it is removed as it is read). */
function takeResume() {
  const url = new URL(window.location.href);
  if (url.searchParams.get("resume") !== "enrol") return null;
  url.searchParams.delete("resume");
  history.replaceState(history.state, "", url.pathname + url.search + url.hash);
  const raw = sessionStorage.getItem(RESUME_KEY);
  sessionStorage.removeItem(RESUME_KEY);
  try {
    const saved = JSON.parse(raw ?? "null");
    return saved && Date.now() - saved.at < RESUME_TTL_MS ? saved : null;
  } catch {
    return null;
  }
}

async function resumeEnrolment(saved) {
  const current = view;
  const telegram = saved.telegram;
  if (telegram && typeof telegram.recipient === "string" && typeof telegram.message === "string") {
    current.setValues(telegram);
    // The same key: the telegram was never sent (its request was refused), so this is still that one telegram.
    pendingSend = { key: String(telegram.key), recipient: telegram.recipient, message: telegram.message };
  }
  try {
    const added = await enrolment.open({ account, returned: true, then: Boolean(telegram) });
    loadFactors();
    loadActivity();
    if (added && telegram && view === current) sendTelegram();
  } catch (error) {
    if (error.code === "login_required") sessionEnded();
  }
}

/** The "No code needed for m:ss" badge, counting down to step_up.expires_at; at zero, ask the BFF what is true now. */
function showElevated(stepUp) {
  stopBadge();
  clearTimeout(recheckTimer);
  if (!view) return;
  const left = stepUp?.active && stepUp.expires_at ? secondsUntil(stepUp.expires_at) : 0;
  if (left <= 0) {
    view.setBadge(null);
    return;
  }
  stopBadge = countdown(
    left,
    // Says what it means: a recent confirmation, so the next protected action asks for no code until it runs out.
    (seconds) => view?.setBadge(`No code needed for ${formatClock(seconds)}`),
    () => {
      view?.setBadge(null);
      recheckSession();
    },
  );
}

/** Ask the BFF for the session again (at the end of the elevated window, or when the tab comes back). */
async function recheckSession(attempt = 0) {
  if (!view) return;
  try {
    const session = await api.session();
    if (!session.authenticated) return sessionEnded();
    const stepUp = session.step_up;
    if (stepUp?.active && secondsUntil(stepUp.expires_at) <= 0 && attempt < 3) {
      // The server still counts it as active while our clock says it's over: expires_at comes in whole seconds,
      // and clocks differ a little. Ask again shortly rather than show a badge with no time on it.
      recheckTimer = setTimeout(() => recheckSession(attempt + 1), 1000);
      return;
    }
    showElevated(stepUp);
  } catch {
    // A failed check changes nothing visible; the next request will tell.
  }
}

// ---- views -----------------------------------------------------------------------------------------------------
function showSignedOut(notice) {
  stopBadge();
  clearTimeout(recheckTimer);
  view = null;
  account = null;
  pendingSend = null;
  let form = null;
  const nativeSignIn = signInWays.includes("native") ? { onSubmit: () => signInNatively(form) } : null;
  form = renderSignedOut(main, accountSlot, { notice, onSignIn: () => api.signIn("/"), nativeSignIn });
}

function sessionEnded() {
  // Ask again rather than guess: a page that booted signed in has not been told which ways to sign in exist.
  boot(SESSION_ENDED_MESSAGE);
}

/** Our own form: the password to the BFF; if FusionAuth asks for a second factor, the sign-in dialog. */
async function signInNatively(form) {
  form.setError(null);
  const invalid = form.validate();
  if (invalid) {
    form.setError(invalid);
    return;
  }
  const { loginId, password } = form.values();
  form.setBusy(true);
  try {
    let session = await api.nativeSignIn.login(loginId, password);
    if (!session?.authenticated && session?.two_factor) {
      session = await signInDialog.open({ challenge: session.two_factor });
      if (!session) {
        form.setBusy(false);
        form.setError("You're not signed in yet: the second step wasn't finished. Sign in again when you're ready.");
        form.afterFailure();
        return;
      }
    }
    if (!session?.authenticated) throw new Error("unexpected answer");
    showSignedIn(session);
  } catch (error) {
    form.setBusy(false);
    form.setError(nativeSignInMessage(error));
    form.afterFailure();
  }
}

function showSignedIn(session, notice) {
  account = session.user?.email ?? null;
  view = renderSignedIn(main, accountSlot, {
    session,
    notice,
    onSubmit: sendTelegram,
    onSignOut: signOut,
    onEndSession: endSession,
    onSignOutEverywhere: signOutEverywhere,
    onAddFactor: addFactor,
    onRemoveFactor: removeFactor,
  });
  // What had focus (the sign-in form's button) is gone: start from the top of the new view, not from <body>.
  if (!document.activeElement || document.activeElement === document.body) view.focusGreeting();
  showElevated(session.step_up);
  loadTelegrams();
  loadActivity();
  loadSessions();
  loadFactors();
  const saved = takeResume();
  if (saved?.enrol) resumeEnrolment(saved);
}

/** The Security panel's list of the person's ways to confirm it's them (their second factors). */
async function loadFactors() {
  const current = view;
  if (!current) return;
  try {
    const listed = await api.factors.list();
    if (view === current) current.setFactors(Array.isArray(listed?.factors) ? listed.factors : []);
  } catch (error) {
    if (error.code === "login_required") return sessionEnded();
    if (view === current) current.setFactorsError(`Couldn't load your ways to confirm it's you. ${errorMessage(error)}`, loadFactors);
  }
}

async function addFactor() {
  const current = view;
  if (!current) return;
  current.setSecurityStatus(null);
  try {
    const added = await enrolment.open({ account });
    if (view !== current) return;
    if (added) current.setSecurityStatus("Your authenticator app is set up. Your other sessions were signed out.");
  } catch (error) {
    if (error.code === "login_required") return sessionEnded();
  }
  loadFactors();
  loadActivity();
  loadSessions(); // a change of factors ends the other sessions
  recheckSession(); // a change of factors ends the step-up this session had
}

async function removeFactor(factor, factors) {
  const current = view;
  if (!current) return;
  current.setSecurityStatus(null);
  try {
    const result = await removal.open({ factor, factors });
    if (view !== current || !result) return;
    current.setSecurityStatus(
      Array.isArray(result.factors) && result.factors.length === 0
        ? "Removed. You have no way to confirm it's you now: add one before you next send a telegram."
        : "Removed. Your other sessions were signed out.",
    );
  } catch (error) {
    if (error.code === "login_required") return sessionEnded();
  } finally {
    if (view === current) {
      loadFactors();
      loadActivity();
      loadSessions();
      recheckSession();
    }
  }
}


/** The "Active sessions" panel. */
async function loadSessions() {
  const current = view;
  if (!current) return;
  try {
    const result = await api.sessions();
    if (view === current) current.setSessions(Array.isArray(result?.sessions) ? result.sessions : []);
  } catch (error) {
    if (error.code === "login_required") return sessionEnded();
    if (view === current) current.setSessionsError(`Couldn't load your sessions. ${errorMessage(error)}`);
  }
}

/** "Sign out" on one row: another session ends (the list is read again); this one is a sign-out. */
async function endSession(id, isCurrent) {
  const current = view;
  if (!current) return;
  current.setSessionsBusy(true);
  try {
    await api.endSession(id);
    if (isCurrent) return sessionEnded();
  } catch (error) {
    if (error.code === "login_required") return sessionEnded();
    // not_found: it had ended already; the list read below shows what is true now.
    if (error.code !== "not_found" && view === current) current.setNotice(errorMessage(error));
  }
  if (view !== current) return;
  current.setSessionsBusy(false);
  loadSessions();
  loadActivity();
}

/** Every session ends, this one too, and FusionAuth revokes the refresh tokens; then FusionAuth's own sign-out. */
async function signOutEverywhere() {
  const current = view;
  if (!current) return;
  current.setSessionsBusy(true);
  current.setNotice(null);
  try {
    const result = await api.signOutEverywhere();
    leaveFor(result?.redirect);
  } catch (error) {
    if (error.code === "login_required") return sessionEnded();
    current.setSessionsBusy(false);
    current.setNotice(errorMessage(error));
  }
}

/** Navigate to FusionAuth's logout URL (it sends the browser back to "/"); only ever to a web URL. */
function leaveFor(redirect) {
  const target = new URL(redirect ?? "/", window.location.href);
  window.location.assign(target.protocol === "https:" || target.protocol === "http:" ? target.href : "/");
}

/** The activity log: the newest page, or (`cursor`) the page after the ones shown. */
async function loadActivity(cursor = null) {
  const current = view;
  if (!current) return;
  try {
    const page = await api.activity(cursor);
    if (view !== current) return;
    const next = typeof page?.next_cursor === "string" ? page.next_cursor : null;
    current.setActivity(Array.isArray(page?.events) ? page.events : [], {
      append: Boolean(cursor),
      onMore: next ? () => loadActivity(next) : null,
    });
  } catch (error) {
    if (error.code === "login_required") return sessionEnded();
    if (view === current) current.setActivityError(`Couldn't load your activity. ${errorMessage(error)}`);
  }
}

async function loadTelegrams() {
  const current = view;
  try {
    const result = await api.telegrams();
    if (view === current) view.setTelegrams(Array.isArray(result?.telegrams) ? result.telegrams : []);
  } catch (error) {
    if (error.code === "login_required") return sessionEnded();
    if (view === current) view.setTelegramsError(`Couldn't load your telegrams. ${errorMessage(error)}`, loadTelegrams);
  }
}

// ---- actions ---------------------------------------------------------------------------------------------------
async function sendTelegram() {
  const current = view;
  if (!current || current.busy) return;
  current.setFormError(null);
  current.setFormStatus(null);
  const invalid = current.validate();
  if (invalid) {
    current.setFormError(invalid);
    return;
  }
  const telegram = current.values();
  if (!pendingSend || pendingSend.recipient !== telegram.recipient || pendingSend.message !== telegram.message) {
    pendingSend = { key: newIdempotencyKey(), ...telegram };
  }
  current.setBusy(true);
  try {
    // If this needs a fresh second factor, api.js opens the dialog and retries with the same key; from here it
    // looks like one request that took a little longer.
    const created = await api.sendTelegram(telegram, pendingSend.key);
    pendingSend = null;
    if (view !== current) return;
    current.clearForm();
    current.prependTelegram(created);
    current.setFormStatus(`Sent! Your telegram to ${created?.recipient ?? telegram.recipient} is on its way.`);
    // If the server makes each step-up good for one action only (step_up.single_use), the badge must go now.
    recheckSession();
  } catch (error) {
    if (error.code === "login_required") return sessionEnded();
    if (view !== current) return;
    // Whatever went wrong, what they typed stays in the form, and the sentence says so ("Not sent. ... Your
    // telegram is still here."): this call site only, the other panels' errors are not about a telegram.
    current.setFormError(errorMessage(error, { sending: true }));
    if (error.code === "insufficient_user_authentication") recheckSession();
  } finally {
    current.setBusy(false);
    // Whatever happened (sent, confirmed, a wrong code, cancelled), the log has it now.
    if (view === current) loadActivity();
  }
}

async function signOut() {
  const current = view;
  if (!current || current.signingOut) return;
  current.setSigningOut(true);
  current.setNotice(null);
  try {
    const result = await api.signOut();
    // FusionAuth ends its own SSO session too, then sends the browser back to "/".
    leaveFor(result?.redirect);
  } catch (error) {
    if (error.code === "login_required") return sessionEnded();
    current.setSigningOut(false);
    current.setNotice(errorMessage(error));
  }
}

// ---- start-up --------------------------------------------------------------------------------------------------
/** A failed sign-in comes back as /?error=<code>: turn it into a sentence and take it out of the address bar. */
function takeSignInError() {
  const url = new URL(window.location.href);
  const code = url.searchParams.get("error");
  if (code === null) return null;
  url.searchParams.delete("error");
  url.searchParams.delete("error_description");
  history.replaceState(history.state, "", url.pathname + url.search + url.hash);
  return signInErrorMessage(code);
}

async function boot(notice) {
  renderLoading(main, accountSlot);
  try {
    const session = await api.session();
    if (session?.authenticated) {
      showSignedIn(session, notice);
    } else {
      signInWays = Array.isArray(session?.sign_in) ? session.sign_in : ["hosted"];
      showSignedOut(notice);
    }
  } catch (error) {
    renderProblem(main, accountSlot, { message: errorMessage(error), onRetry: () => boot(notice) });
  }
}

// Coming back to the tab after a while: the elevated window or the session itself may have ended meanwhile.
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && view) recheckSession();
});

boot(takeSignInError());
