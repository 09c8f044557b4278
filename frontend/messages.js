// Sentences for people. The BFF's error codes are stable identifiers; its error_description is English meant for
// developers and logs, so the page says things in its own words and falls back to a generic sentence.
//
// Plain words: no "second factor", "challenge", "step-up" or "sign-in service" (what a person calls these is "a code",
// "confirming it's you", "signing in"). No blame where the person could not have acted otherwise: a paused or locked
// account, a missing way to confirm, a server that is down are said as what happened and what to do next.

import { formatAt, formatDuration, formatWait, waitEnd } from "./dom.js";

const SIGN_IN_ERRORS = {
  access_denied: "Sign-in was cancelled, so you're still signed out. You can try again whenever you like.",
  login_failed: "Signing in didn't work. Please try again.",
  login_expired: "The sign-in took too long and timed out. Please try again.",
  login_replayed: "That sign-in was already used. Please sign in again.",
  invalid_state:
    "We couldn't match the sign-in to this browser (perhaps it started in another tab). Please sign in again.",
  invalid_request: "The sign-in came back incomplete. Please try again.",
  token_exchange_failed: "Signing in didn't finish. Please try again.",
  invalid_token: "We couldn't check your sign-in. Please try again.",
  fusionauth_unavailable: "Signing in isn't available right now. Please try again in a moment.",
  fusionauth_timeout: "Signing in is taking too long right now. Please try again in a moment.",
  fusionauth_error: "Signing in had a problem on our side. Please try again in a moment.",
};

/** The sentence for a `/?error=<code>` left by a failed sign-in. */
export function signInErrorMessage(code) {
  return Object.hasOwn(SIGN_IN_ERRORS, code) ? SIGN_IN_ERRORS[code] : "Signing in didn't work. Please try again.";
}

/** Answers where the account itself cannot sign in or confirm; trying again won't help, these say what will. */
export const ACCOUNT_PROBLEMS = {
  account_locked: "Your account is locked. Try again later, or contact support.",
  account_expired: "Your account has expired. Please contact support.",
  login_prevented: "Your account is locked or suspended. Please contact support.",
  account_not_found: "Your account no longer exists. Please contact support.",
  step_up_locked: "Confirming it's you is locked on this account after many codes that didn't work. Please contact support.",
  password_change_required:
    "Your password has to be changed before you can sign in. Use FusionAuth's sign-in page (below) to change it.",
  verification_required:
    "Your account isn't verified yet. Follow the link in the email you were sent, then sign in again.",
  not_registered: "Your account doesn't have access to Singing Telegrams. Ask an administrator to give you access.",
  second_factor_setup_required:
    "Your account needs a way to confirm it's you (such as an authenticator app) before you can sign in. Use " +
    "FusionAuth's sign-in page (below) to set one up.",
};

/** "at 10:42 (in 3 minutes)": when a wait ends, in words, or "in a moment" when the answer did not say. */
export function waitWords(error) {
  const until = waitEnd(error);
  if (!until) return "in a moment";
  const seconds = Math.max(1, Math.round((until.getTime() - Date.now()) / 1000));
  return seconds < 60 ? `in ${formatDuration(seconds)}` : `${formatAt(until)} (in ${formatWait(seconds)})`;
}

// A lock ending further away than this is not the tenant's few minutes after wrong codes: more likely an
// administrator's suspension, which the person may want to ask about.
const LONG_LOCK_MS = 24 * 60 * 60 * 1000;

/**
 * The answers that are a pause with an end (429 and a `retry_after`, or FusionAuth's `locked_until`): the person can
 * do nothing but wait, and then try again. The dialogs wait them out with a countdown and come back by themselves;
 * the sign-in form and the page say until when.
 *
 * One set for every place, with `too_many_attempts` in it although only the password form meets it today (the BFF's
 * failure budget for sign-ins, POST /auth/native/login, which the set-up dialog's password step also calls): it is a
 * wait with an end like the others, so should a code endpoint ever answer it, a dialog pausing and coming back is
 * right, where "something went wrong" would not be.
 */
export const PAUSES = new Set(["temporarily_locked", "too_many_starts", "too_many_attempts", "step_up_blocked"]);

/** The sentence for a pause with an end, wherever it is met (the dialog, the sign-in form, the page). */
export function pausedMessage(error) {
  switch (error?.code) {
    case "temporarily_locked": {
      // FusionAuth's own lock with an end: usually the tenant's few minutes after wrong codes or passwords, but an
      // administrator's 30-day suspension is one too (the BFF answers any lock ending within a year so). So no
      // "short while" and no "for your safety": when it ends, and, when that is far off, who to ask.
      const until = waitEnd(error);
      const long = until !== null && until.getTime() - Date.now() > LONG_LOCK_MS;
      const locked = `Your account is locked. You can try again ${waitWords(error)}.`;
      return long ? `${locked} If you didn't expect this, contact support.` : locked;
    }
    case "too_many_starts":
      return `Confirming was started many times in a short while, so it's paused. You can try again ${waitWords(error)}.`;
    case "too_many_attempts":
      return `Several sign-ins in a row didn't work, so signing in is paused for your safety. You can try again ${waitWords(error)}.`;
    default: // step_up_blocked
      return `Several codes in a row didn't work, so confirming is paused for your safety. You can try again ${waitWords(error)}.`;
  }
}

/** The sentence for a failed native sign-in (the password form). */
export function nativeSignInMessage(error) {
  const code = error?.code;
  if (code === "invalid_credentials") return "That email or username and password don't match. Please try again.";
  if (PAUSES.has(code)) return pausedMessage(error);
  if (code === "no_second_factor") return ACCOUNT_PROBLEMS.second_factor_setup_required;
  if (Object.hasOwn(ACCOUNT_PROBLEMS, code)) return ACCOUNT_PROBLEMS[code];
  return errorMessage(error);
}

export const NETWORK_MESSAGE = "Can't reach the server. Check your connection and try again.";
export const SESSION_ENDED_MESSAGE = "Your session has ended. Please sign in again.";
export const SIGNED_OUT_NOTICE = "You're signed out.";
const KEPT = "Your telegram is still here.";
// "in 45 s" for an answer's retry_after (seconds), "in a moment" when it has none.
const within = (retryAfter) => (Number.isFinite(retryAfter) ? `in ${formatWait(retryAfter)}` : "in a moment");

/**
 * What happened to a telegram that was not sent, and that what was typed is kept: only for the answer to Send (the
 * form's error), never for the other panels; null for an answer that says nothing about the telegram.
 */
function notSentMessage(error) {
  const code = error?.code;
  const retryAfter = error?.body?.retry_after;
  if (PAUSES.has(code)) return `Not sent. ${pausedMessage(error)} ${KEPT}`;
  if (Object.hasOwn(ACCOUNT_PROBLEMS, code)) return `Not sent. ${ACCOUNT_PROBLEMS[code]}`;
  switch (code) {
    case "step_up_cancelled":
      return `Not sent, because confirming was cancelled. ${KEPT} Send it again when you're ready.`;
    case "no_second_factor":
      // Nobody's fault: the account has no way to confirm yet.
      return `Not sent yet: your account needs a way to confirm it's you first. ${KEPT}`;
    case "transaction_expired":
      return `Not sent: that confirmation is no longer waiting. ${KEPT} Send it again to confirm it anew.`;
    case "idempotency_key_reused":
      return "This telegram changed since it was first sent. Please send it again.";
    case "insufficient_user_authentication":
      return "Your confirmation didn't go through in time. Please send again.";
    case "too_many_pending":
      return `Too many telegrams are waiting to be confirmed. Try again ${within(retryAfter)}.`;
    default:
      return null;
  }
}

/**
 * The sentence for an ApiError anywhere on the page (the dialogs have their own for the codes they handle in place).
 * `sending`: the answer to sending a telegram, said as "not sent", with the telegram still in the form; every other
 * panel (loading the factors, the sessions, signing out, ...) gets the same facts without the telegram.
 */
export function errorMessage(error, { sending = false } = {}) {
  const telegram = sending ? notSentMessage(error) : null;
  if (telegram) return telegram;
  const retryAfter = error?.body?.retry_after;
  const code = error?.code;
  if (PAUSES.has(code)) return pausedMessage(error);
  if (Object.hasOwn(ACCOUNT_PROBLEMS, code)) return ACCOUNT_PROBLEMS[code];
  switch (code) {
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
      return "That way to confirm it's you isn't on your account any more.";
    case "factor_change_refused":
      return "This change isn't allowed for your account.";
    case "idempotency_key_reused":
      return "This changed since it was first sent. Please try again.";
    case "step_up_cancelled":
      return "Nothing was done, because confirming was cancelled.";
    case "no_second_factor":
      // Nobody's fault: the account has no way to confirm yet.
      return "Your account needs a way to confirm it's you first.";
    case "transaction_expired":
      return "That confirmation is no longer waiting. Please try again.";
    case "insufficient_user_authentication":
      return "Your confirmation didn't go through in time. Please try again.";
    case "too_many_pending":
      return `Too many requests are waiting to be confirmed. Try again ${within(retryAfter)}.`;
    case "too_many_requests":
    case "rate_limited":
      return `Too many requests. Try again ${within(retryAfter)}.`;
    case "fusionauth_unavailable":
    case "fusionauth_timeout":
    case "fusionauth_error":
      return "Signing in and confirming aren't answering right now. Please try again in a moment.";
    default:
      return "Something went wrong on our side. Please try again in a moment.";
  }
}

// ---- the activity log ------------------------------------------------------------------------------------------

const METHOD_WORDS = { authenticator: "your authenticator app", email: "an emailed code", sms: "a texted code" };
const FACTOR_NAMES = { authenticator: "Authenticator app", email: "Email codes", sms: "Text message codes" };
const SENT_BY = { email: "by email", sms: "by text message" };
// What was asked to be confirmed ("Asked to confirm a singing telegram"), and that it ran, by the action's name.
const ACTIONS = {
  send_telegram: "a singing telegram",
  add_factor: "adding a way to confirm it's you",
  remove_factor: "removing a way to confirm it's you",
};
const ACTIONS_DONE = {
  send_telegram: "Singing telegram sent",
  add_factor: "Adding a way to confirm it's you: confirmed",
  remove_factor: "Removing a way to confirm it's you: confirmed",
};
const ENDINGS = {
  idle_timeout: "Session ended after a while without activity",
  absolute_timeout: "Session ended: it reached its time limit",
  signed_out_elsewhere: "Session signed out from another of your sessions",
  refresh_refused: "Session ended: FusionAuth no longer accepts it",
  refresh_outage: "Session ended: FusionAuth could not be reached for too long",
  user_deactivated: "Session ended: your account was deactivated",
  user_deleted: "Session ended: your account was deleted",
  tokens_revoked: "Session ended: its access was revoked at FusionAuth",
  login_prevented: "Session ended: your account was locked",
  password_changed: "Session ended: your password was changed",
  factors_changed: "Session ended: your ways to confirm it's you were changed",
  too_many_sessions: "Session ended: you signed in on too many devices",
};

const methodWords = (method) => METHOD_WORDS[method] ?? "a code";
const factorName = (method) => FACTOR_NAMES[method] ?? "A way to confirm it's you";
// An action this page has no words for goes by its configured name ("export_report": "export report").
const actionName = (action) => (action ? String(action).replaceAll("_", " ") : "protected action");

/** What happened, in plain words ("Confirmed it's you with your authenticator app"); the panel adds where and when. */
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
      if (!event.action) return "Asked to confirm it's you";
      return `Asked to confirm ${ACTIONS[event.action] ?? `“${actionName(event.action)}”`}`;
    case "step_up_code_sent":
      return `Code sent ${SENT_BY[event.method] ?? "to you"}`;
    case "step_up_verified":
      return `Confirmed it's you with ${methodWords(event.method)}`;
    case "step_up_wrong_code":
      return Number.isFinite(event.attempts_remaining)
        ? `A code didn't work (${event.attempts_remaining} ${event.attempts_remaining === 1 ? "try" : "tries"} left)`
        : "A code didn't work";
    case "step_up_blocked":
      // FusionAuth's lock may be the tenant's few minutes or an administrator's weeks: its length, not "a short while".
      if (event.reason === "account_locked") {
        return Number.isFinite(event.retry_after) && event.retry_after > 0
          ? `Account locked for ${formatDuration(event.retry_after)}`
          : "Account locked";
      }
      return "Confirming paused after several codes didn't work";
    case "step_up_locked":
      return "Confirming locked after many codes didn't work";
    case "privileged_action": {
      if (Object.hasOwn(ACTIONS_DONE, event.action)) return ACTIONS_DONE[event.action];
      const what = actionName(event.action);
      return `${what.charAt(0).toUpperCase()}${what.slice(1)} done`;
    }
    case "second_factor_added":
      return `${factorName(event.method)} added as a way to confirm it's you`;
    case "second_factor_removed":
      return `${factorName(event.method)} removed as a way to confirm it's you`;
    default:
      return "Account activity";
  }
}

/** "Confirmed it's you with your authenticator app, from Firefox on Linux" (the time is shown beside it). */
export function activitySentence(event) {
  const agent = typeof event?.agent === "string" && event.agent ? event.agent : null;
  return agent ? `${activityWhat(event)} from ${agent}` : activityWhat(event);
}
