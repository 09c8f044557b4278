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
    case "idempotency_key_reused":
      return "This telegram changed since it was first sent. Please send it again.";
    case "step_up_cancelled":
      return "Not sent: you didn't confirm it's you. Your telegram is still here when you're ready.";
    case "insufficient_user_authentication":
      return "Your confirmation didn't go through in time. Please send again.";
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
