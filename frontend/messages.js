// Sentences for people. The BFF's error codes are stable identifiers; its error_description is English meant for
// developers and logs, so the page says things in its own words and falls back to a generic sentence.

import { formatWait } from "./dom.js";

const SIGN_IN_ERRORS = {
  access_denied: "Sign-in was cancelled, so you're still signed out. You can try again whenever you like.",
  login_failed: "Signing in didn't work. Please try again.",
  login_expired: "The sign-in took too long and timed out. Please try again.",
  login_replayed: "That sign-in was already used. Please sign in again.",
  invalid_state:
    "We couldn't match the sign-in to this browser (perhaps it started in another tab). Please sign in again.",
  invalid_request: "The sign-in came back incomplete. Please try again.",
  token_exchange_failed: "The sign-in service didn't confirm your sign-in. Please try again.",
  invalid_token: "We couldn't verify your sign-in. Please try again.",
  fusionauth_unavailable: "The sign-in service can't be reached right now. Please try again in a moment.",
  fusionauth_timeout: "The sign-in service didn't answer in time. Please try again in a moment.",
  fusionauth_error: "The sign-in service had a problem. Please try again in a moment.",
};

/** The sentence for a `/?error=<code>` left by a failed sign-in. */
export function signInErrorMessage(code) {
  return Object.hasOwn(SIGN_IN_ERRORS, code) ? SIGN_IN_ERRORS[code] : "Signing in didn't work. Please try again.";
}

/** Answers where the account itself cannot sign in or step up; trying again won't help, these say what will. */
export const ACCOUNT_PROBLEMS = {
  account_locked: "Your account is locked at the sign-in service. Try again later, or contact support.",
  account_expired: "Your account has expired at the sign-in service. Please contact support.",
  login_prevented: "Your account is locked or suspended at the sign-in service. Please contact support.",
  account_not_found: "Your account no longer exists at the sign-in service. Please contact support.",
  step_up_locked: "Too many wrong codes on this account. Confirming is locked; please contact support.",
  password_change_required:
    "Your password has to be changed before you can sign in. Use FusionAuth's sign-in page (below) to change it.",
  verification_required:
    "Your account isn't verified yet. Follow the link in the email you were sent, then sign in again.",
  not_registered: "Your account doesn't have access to Singing Telegrams. Ask an administrator to give you access.",
  second_factor_setup_required:
    "Your account needs a second factor before you can sign in. Use FusionAuth's sign-in page (below) to set one up.",
};

/** The sentence for a failed native sign-in (the password form). */
export function nativeSignInMessage(error) {
  const code = error?.code;
  const retryAfter = error?.body?.retry_after;
  if (code === "invalid_credentials") return "That email or username and password don't match. Please try again.";
  if (code === "too_many_attempts" || code === "step_up_blocked") {
    const wait = Number.isFinite(retryAfter) ? formatWait(retryAfter) : "a while";
    return code === "too_many_attempts"
      ? `Too many failed sign-ins. For your safety, please wait ${wait} before trying again.`
      : `Too many wrong codes recently. For your safety, please wait ${wait} before signing in again.`;
  }
  if (Object.hasOwn(ACCOUNT_PROBLEMS, code)) return ACCOUNT_PROBLEMS[code];
  return errorMessage(error);
}

export const NETWORK_MESSAGE = "Can't reach the server. Check your connection and try again.";
export const SESSION_ENDED_MESSAGE = "Your session has ended. Please sign in again.";
export const SIGNED_OUT_NOTICE = "You're signed out.";

/** The sentence for an ApiError anywhere on the page (the dialog has its own for step-up codes). */
export function errorMessage(error) {
  const retryAfter = error?.body?.retry_after;
  switch (error?.code) {
    case "network_error":
      return NETWORK_MESSAGE;
    case "login_required":
      return SESSION_ENDED_MESSAGE;
    case "csrf_rejected":
      return "Your browser sent this request in a way we can't accept. Reload the page and try again.";
    case "invalid_request":
      return "Something in the form isn't right. Check it and try again.";
    case "request_too_large":
      return "That's too long to send. Shorten it and try again.";
    case "reauthentication_required":
      return "For your safety, sign in again first: this needs a sign-in from the last few minutes.";
    case "factor_not_found":
      return "That second factor isn't on your account any more.";
    case "factor_change_refused":
      return "The sign-in service doesn't allow this change to your second factors.";
    case "idempotency_key_reused":
      return "This telegram changed since it was first sent. Please send it again.";
    case "step_up_cancelled":
      return "Not sent: you didn't confirm it's you. Your telegram is still here when you're ready.";
    case "insufficient_user_authentication":
      return "Your confirmation didn't go through in time. Please send again.";
    case "too_many_pending":
      return Number.isFinite(retryAfter)
        ? `Too many telegrams are waiting for a confirmation. Try again in ${formatWait(retryAfter)}.`
        : "Too many telegrams are waiting for a confirmation. Try again in a moment.";
    case "too_many_requests":
    case "rate_limited":
      return Number.isFinite(retryAfter)
        ? `Too many requests. Try again in ${formatWait(retryAfter)}.`
        : "Too many requests. Try again in a moment.";
    case "fusionauth_unavailable":
    case "fusionauth_timeout":
    case "fusionauth_error":
      return "The sign-in service isn't answering right now. Please try again in a moment.";
    default:
      return "Something went wrong on our side. Please try again in a moment.";
  }
}

// ---- the activity log ------------------------------------------------------------------------------------------

const METHOD_WORDS = { authenticator: "authenticator app", email: "an emailed code", sms: "a texted code" };
const SENT_BY = { email: "by email", sms: "by text message" };
const ACTIONS = { send_telegram: "singing telegram", add_factor: "new second factor", remove_factor: "second factor's removal" };
// A privileged action that ran, by its name.
const ACTIONS_DONE = {
  send_telegram: "Singing telegram sent",
  add_factor: "Adding a second factor confirmed",
  remove_factor: "Removing a second factor confirmed",
};
const ENDINGS = {
  idle_timeout: "Session ended after a while without activity",
  absolute_timeout: "Session ended: it reached its time limit",
  signed_out_elsewhere: "Session signed out from another of your sessions",
  refresh_refused: "Session ended: the sign-in service no longer accepts it",
  refresh_outage: "Session ended: the sign-in service could not be reached for too long",
  user_deactivated: "Session ended: your account was deactivated",
  user_deleted: "Session ended: your account was deleted",
  tokens_revoked: "Session ended: its access was revoked at the sign-in service",
  login_prevented: "Session ended: your account was locked",
  password_changed: "Session ended: your password was changed",
  factors_changed: "Session ended: your second factors were changed",
  too_many_sessions: "Session ended: you signed in on too many devices",
};

const methodWords = (method) => METHOD_WORDS[method] ?? "a second factor";
const actionWords = (action) => ACTIONS[action] ?? (action ? String(action).replaceAll("_", " ") : "privileged action");

/** What happened, in plain words ("Step-up with authenticator app"); the panel adds where from and when. */
export function activityWhat(event) {
  switch (event?.kind) {
    case "sign_in":
      if (event.via === "native") {
        const also = event.method ? ` and ${methodWords(event.method)}` : "";
        return `Signed in with your password${also}`;
      }
      return "Signed in on FusionAuth's page";
    case "sign_out":
      return "Signed out";
    case "session_ended":
      if (Object.hasOwn(ENDINGS, event.reason)) return ENDINGS[event.reason];
      if (event.outcome === "replaced") return "Session replaced by a new sign-in";
      if (event.outcome === "revoked") return "Session ended by the service";
      return "Session ended";
    case "step_up_started":
      return event.action ? `Asked to confirm a ${actionWords(event.action)}` : "Step-up started";
    case "step_up_code_sent":
      return `Code sent ${SENT_BY[event.method] ?? "to you"}`;
    case "step_up_verified":
      return `Step-up with ${methodWords(event.method)}`;
    case "step_up_wrong_code":
      return Number.isFinite(event.attempts_remaining)
        ? `Wrong code entered (${event.attempts_remaining} ${event.attempts_remaining === 1 ? "attempt" : "attempts"} left)`
        : "Wrong code entered";
    case "step_up_blocked":
      return "Step-up paused after too many wrong codes";
    case "step_up_locked":
      return "Step-up locked after too many wrong codes";
    case "privileged_action": {
      if (Object.hasOwn(ACTIONS_DONE, event.action)) return ACTIONS_DONE[event.action];
      const what = actionWords(event.action);
      return `${what.charAt(0).toUpperCase()}${what.slice(1)} done`;
    }
    case "second_factor_added":
      return `Second factor added: ${methodWords(event.method)}`;
    case "second_factor_removed":
      return `Second factor removed: ${methodWords(event.method)}`;
    default:
      return "Account activity";
  }
}

/** "Step-up with authenticator app from Firefox on Linux" (the time is shown beside it). */
export function activitySentence(event) {
  const agent = typeof event?.agent === "string" && event.agent ? event.agent : null;
  return agent ? `${activityWhat(event)} from ${agent}` : activityWhat(event);
}
