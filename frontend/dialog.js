// The dialog that asks for a code, one for both places a code is asked for:
//
// - step-up (`createStepUpDialog`): a fresh confirmation when the BFF answers a request with the RFC 9470 challenge;
//   a challenge bound to a transaction first says what is confirmed ("Confirm: singing telegram to Bob — “Happy
//   birthday…”"). `open()` resolves with the new step-up status ({ active, expires_at, method }; not active after a
//   bound step-up, which elevates nothing) once the person has confirmed, with { setUp: true } when someone without
//   a way to confirm chose to set one up (`canSetUp`: the page walks them through adding an authenticator app, then
//   the action goes again), or with null when they cancel. It rejects with an ApiError when the dialog could not go
//   on: the session is gone (login_required, so the page can show the signed-out view), the account has no way to
//   confirm and the person closed the dialog (no_second_factor), confirming is paused or the account is refused; the
//   page then says why, in its own words, instead of "you cancelled".
// - sign-in (`createSignInDialog`): the code FusionAuth asks for after the password (its 242). `open()` resolves
//   with the new session, or null when the person cancels or must enter their password again.
//
// Both run the same machine in the BFF, so they share every piece here: methods, sending, codes, recovery codes,
// limits and errors; a `flow` says where the calls go. A native <dialog> opened with showModal() (dom.js's `modal`)
// gives us the focus trap, Escape to cancel and an inert page behind it for free.
//
// Focus is never left on <body> (WCAG 2.4.3): the dialog is rendered before it is shown and its heading takes focus
// while the options load; buttons that cannot be used right now are aria-disabled, never `disabled` (a disabled
// button that has focus drops it to the page); focus moves to what comes next *before* anything is hidden; and on
// close it goes back where it was.

import { ApiError } from "./api.js";
import { codeField, countdown, dialogAlert, formatDuration, formatWait, h, modal, show, waitOut } from "./dom.js";
import { ACCOUNT_PROBLEMS, errorMessage, NETWORK_MESSAGE, PAUSES, pausedMessage } from "./messages.js";

const METHOD_NAMES = { authenticator: "Authenticator app", email: "Email", sms: "Text message" };
const CODE_HINTS = {
  authenticator: "Enter the 6-digit code your authenticator app shows now.",
  email: "Enter the code from the email we sent you.",
  sms: "Enter the code from the text message we sent you.",
};
const BACK_TO_METHOD = {
  authenticator: "Use your authenticator app instead",
  email: "Use an emailed code instead",
  sms: "Use a texted code instead",
};
const RECOVERY_HINT =
  "Enter one of the recovery codes you saved when you first set up a way to confirm it's you. Each one works once.";

/**
 * The step-up dialog. A challenge bound to a transaction says what is being confirmed, before any code. Someone
 * without a way to confirm is offered to set one up (`canSetUp`), which resolves open() with { setUp: true }.
 */
export function createStepUpDialog({ api, canSetUp = false }) {
  return createTwoFactorDialog({
    prefix: "step-up",
    canSetUp,
    title: "Confirm it's you",
    intro: ({ maxAge, transaction } = {}) => {
      // Bound: this code confirms that one request, and only it (the server's summary says which).
      if (transaction) return "The code you enter confirms this, and nothing else:";
      // max_age is how fresh the confirmation must be (RFC 9470); whether one confirmation covers one action or
      // every action for that long is the server's business (step_up.single_use), so don't promise either.
      return Number.isFinite(maxAge) && maxAge > 0
        ? `To go ahead, confirm it's you with a code. We ask when you haven't in the last ${formatDuration(maxAge)}.`
        : "To go ahead, confirm it's you with a code.";
    },
    // The person's own words (a recipient, a message), built into a sentence by the server: shown as text only.
    confirms: ({ transaction } = {}) => (transaction ? `Confirm: ${transaction.summary}` : null),
    // Nobody's fault, so no blame and no "set one up elsewhere first": what is missing, and the way to set it up.
    noFactor: canSetUp
      ? "Your account doesn't have a way to confirm it's you yet, such as an authenticator app. Set one up now: it " +
        "takes a minute, and then this goes ahead where you left off."
      : "Your account doesn't have a way to confirm it's you yet, such as an authenticator app, so this can't go " +
        "ahead. Nothing was done.",
    start: ({ transaction } = {}) => api.stepUp.start(transaction?.id),
    send: (methodId) => api.stepUp.send(methodId),
    finish: async (code, methodId) => {
      const result = await api.stepUp.finish(code, methodId);
      return result?.step_up ?? { active: true, expires_at: null, method: null };
    },
    cancel: () => api.stepUp.cancel(),
  });
}

/**
 * The code of a native sign-in. `open({ challenge })` takes the methods that came back with the password; there is
 * nothing to start, and a code request that is gone can only be replaced by signing in again.
 */
export function createSignInDialog({ api }) {
  return createTwoFactorDialog({
    prefix: "sign-in-factor",
    title: "One more step to sign in",
    intro: () => "Your account asks for a code as well as your password.",
    noFactor: "Your account doesn't have a way to confirm it's you yet. Use FusionAuth's sign-in page to set one up.",
    start: ({ challenge }) => Promise.resolve(challenge),
    send: (methodId) => api.nativeSignIn.send(methodId),
    finish: (code, methodId) => api.nativeSignIn.finish(code, methodId),
    cancel: null, // the waiting sign-in expires by itself; nothing to discard
    restartLabel: "Sign in again",
  });
}

/** aria-disabled, not disabled: the button keeps focus and stays in the Tab order; its handler checks `busy`. */
function setDisabled(button, value) {
  button.setAttribute("aria-disabled", String(Boolean(value)));
}

const isDisabled = (button) => button.getAttribute("aria-disabled") === "true";

function createTwoFactorDialog(flow) {
  const prefix = flow.prefix;
  const id = (name) => `${prefix}-${name}`;
  // ---- the markup, built once -------------------------------------------------------------------------------
  // tabindex=-1: the heading takes focus while the options load, so focus is inside the dialog, on something named.
  const title = h("h2", { id: id("title"), class: "dialog-title", tabindex: "-1" }, flow.title);
  const intro = h("p", { id: id("intro"), class: "dialog-intro" });
  const confirms = h("p", { id: id("confirms"), class: "dialog-confirms", "data-testid": id("confirm") });
  const loading = h("p", { class: "loading", "data-testid": id("loading") }, "Getting your options…");

  const methodList = h("div", { class: "method-list" });
  const methods = h(
    "fieldset",
    { class: "methods", "data-testid": id("methods") },
    h("legend", {}, "Get a code from"),
    methodList,
  );

  const sendButton = h("button", {
    type: "button",
    class: "button secondary",
    "aria-describedby": id("resend-wait"),
    "data-testid": id("send"),
  });
  // Where the code went, for the eye; the announcer says it (and the wait) once, for the ear.
  const sentNotice = h("p", { class: "sent-notice", "data-testid": id("sent") });
  // The wait before another code may be sent, in text anyone can read and reach (not only in a button's label). It
  // ticks, so it is NOT a live region: the announcer says the wait once when the code is sent, and when it is over.
  const resendWait = h("p", { id: id("resend-wait"), class: "resend-wait", "data-testid": id("resend-wait") });
  const sendRow = h("div", { class: "send-row" }, sendButton, sentNotice, resendWait);

  const field = codeField(prefix, { label: "Verification code" });
  const codeInput = field.input;
  // FusionAuth accepts a recovery code wherever it accepts a code (docs/fusionauth.md §4): another way in when the
  // phone is lost or the email does not arrive.
  const codeSwitch = h("button", { type: "button", class: "button link code-switch", "data-testid": id("use-recovery") });

  // Problems are announced (role="alert"), once each. Countdowns are NOT inside live regions (a screen reader would
  // read every second); `announcer` says once when a wait is over.
  const alert = dialogAlert(prefix);
  const announcer = h("p", { class: "visually-hidden", "aria-live": "polite", "data-testid": id("announcer") });

  const waitText = h("p", { class: "wait", "data-testid": id("wait") });
  const restartButton = h(
    "button",
    { type: "button", class: "button secondary", "data-testid": id("restart") },
    "Start again",
  );
  const panel = h("div", { class: "dialog-panel" }, waitText, restartButton);
  // No way to confirm yet: the way out of the dead end (the page walks through adding an authenticator app).
  const setUpButton = h(
    "button",
    { type: "button", class: "button primary set-up", "data-testid": id("set-up"), hidden: true },
    "Set up an authenticator app",
  );

  const cancelButton = h("button", { type: "button", class: "button ghost", "data-testid": id("cancel") }, "Cancel");
  const verifyButton = h("button", { type: "submit", class: "button primary", "data-testid": id("verify") }, "Verify");

  const form = h(
    "form",
    { class: "dialog-form", novalidate: true },
    h("div", { class: "dialog-heading" }, h("span", { class: "dialog-icon", "aria-hidden": "true" }), title),
    intro,
    confirms,
    loading,
    methods,
    sendRow,
    field.row,
    codeSwitch,
    alert.element,
    panel,
    setUpButton,
    announcer,
    h("div", { class: "dialog-actions" }, cancelButton, verifyButton),
  );
  const dialog = h(
    "dialog",
    {
      class: "step-up-dialog",
      "aria-labelledby": id("title"),
      "aria-describedby": `${id("intro")} ${id("confirms")}`,
      "data-testid": id("dialog"),
    },
    form,
  );
  // In the document only while open: the page then has exactly one "Verification code" field, whichever dialog.

  // ---- state ------------------------------------------------------------------------------------------------
  // phase: "loading"
  //      | "ready"    choose a method, (send and) enter a code, or a recovery code
  //      | "restart"  the code request is gone (expired, too many wrong codes) or could not start: offer to start again
  //      | "blocked"  confirming is paused until a known time: wait, then try again
  //      | "dead-end" no way to confirm, or the account itself is refused: only Close
  let phase = "loading";
  let options = []; // [{ id, method, hint, last_used }]
  let selectedId = null;
  let sentTo = new Set(); // method ids a code was sent to in this round
  let recovery = false; // the field takes a recovery code
  let sendsExhausted = false;
  let busy = false;
  let started = false; // a challenge exists on the server (so Cancel discards it)
  let stopWait = () => {};
  // Bumped by every start() and close(): an answer that arrives for an older round (the person cancelled or
  // started again while it was on its way) must not touch the dialog.
  let generation = 0;
  let openedWith = {}; // what open() was given: passed to flow.start() again by "Start again"
  let stopReason = null; // why the dialog cannot go on (dead-end, paused): what open() rejects with on close
  let noFactorView = false;
  // The server spaces sends per person, not per code request, and remembers it across Cancel: so does the dialog,
  // by when the wait ends (milliseconds), or a reopened dialog would offer a send the server refuses.
  let resendUntil = 0;
  let resendLeft = 0; // whole seconds until resendUntil, while counting
  let stopResend = () => {};
  // Escape closes a modal <dialog> by itself; whatever closed it, an unfinished confirmation counts as cancelled.
  // (The <dialog>'s own "close" event after close() comes later, as a task: by then this dialog may be open again
  // for the next challenge, several requests each confirmed in turn, and modal() ignores that stale event.)
  const shell = modal(dialog, { onDismiss: () => close() });

  const selected = () => options.find((option) => option.id === selectedId) ?? null;
  const needsSend = (option) => option && option.method !== "authenticator";

  function render() {
    const option = selected();
    const ready = phase === "ready";
    const sending = ready && !recovery && needsSend(option);
    // A sent code works whichever method is chosen now (FusionAuth accepts any valid code of the person).
    const codeVisible = ready && Boolean(option) && (recovery || !needsSend(option) || sentTo.size > 0);
    show(loading, phase === "loading");
    show(methods, ready && !recovery && options.length > 0);
    show(sendRow, sending);
    show(field.row, codeVisible);
    show(codeSwitch, ready && options.length > 0);
    show(panel, phase === "restart" || phase === "blocked");
    show(setUpButton, phase === "dead-end" && noFactorView && Boolean(flow.canSetUp));
    show(verifyButton, phase === "ready" || phase === "loading");
    setDisabled(verifyButton, busy || !codeVisible);
    form.setAttribute("aria-busy", String(busy || phase === "loading"));
    cancelButton.textContent = phase === "dead-end" ? "Close" : "Cancel";

    field.label.textContent = recovery ? "Recovery code" : "Verification code";
    field.hint.textContent = recovery
      ? RECOVERY_HINT
      : (CODE_HINTS[option?.method] ?? "Enter the code you received.");
    codeSwitch.textContent = recovery
      ? (BACK_TO_METHOD[option?.method] ?? "Use a code instead")
      : "Use a recovery code";
    if (option) {
      sendButton.textContent = sentTo.has(option.id) ? "Send a new code" : "Send code";
      setDisabled(sendButton, busy || resendLeft > 0 || sendsExhausted);
    }
    if (resendLeft > 0 && sending) {
      resendWait.textContent =
        sentTo.size > 0
          ? `You can ask for a new code in ${formatWait(resendLeft)}.`
          : `A code was sent a moment ago. You can ask for another in ${formatWait(resendLeft)}.`;
    } else {
      resendWait.textContent = "";
    }
  }

  const say = alert.say;
  // The error is the field's own (WCAG 3.3.1): marked on it, and read with it.
  const markInvalid = (message) => alert.invalid(field, message);

  function setBusy(value) {
    busy = value;
    render();
  }

  /** Digits by default; letters (and the hyphen) for a recovery code, with a keyboard that offers them. */
  function setCodeMode(isRecovery) {
    recovery = isRecovery;
    codeInput.value = "";
    field.clearInvalid();
    field.acceptLetters(recovery);
  }

  // ---- starting a challenge ---------------------------------------------------------------------------------
  function resetRound() {
    started = false;
    stopWait();
    phase = "loading";
    options = [];
    selectedId = null;
    sentTo = new Set();
    sendsExhausted = false;
    stopReason = null;
    noFactorView = false;
    setCodeMode(false);
    sentNotice.textContent = "";
    waitText.textContent = "";
    announcer.textContent = "";
    say("");
    resumeResendCooldown();
    render();
  }

  async function start() {
    const round = ++generation;
    resetRound();
    try {
      const result = await flow.start(openedWith);
      if (round !== generation) {
        // Closed while starting: this challenge now exists on the server with nobody to finish it.
        if (!shell.isOpen) discard();
        return;
      }
      started = true;
      options = Array.isArray(result?.methods) ? result.methods : [];
      if (options.length === 0) {
        noFactor();
        return;
      }
      selectedId = (options.find((option) => option.last_used) ?? options[0]).id;
      renderMethods();
      phase = "ready";
      render();
      // Only from where opening put it: someone who already moved on (to Cancel, say) keeps their place.
      if (document.activeElement === title || !dialog.contains(document.activeElement)) focusNext();
    } catch (error) {
      if (round === generation) handleError(error, { during: "start" });
    }
  }

  function renderMethods() {
    methodList.replaceChildren(
      ...options.map((option) => {
        const name = METHOD_NAMES[option.method] ?? option.method;
        const radio = h("input", {
          type: "radio",
          name: "method",
          value: option.id,
          "data-testid": id(`method-${option.method}`),
          onchange: () => {
            selectedId = option.id;
            say("");
            field.clearInvalid();
            render();
          },
        });
        radio.checked = option.id === selectedId;
        const hint = option.hint && option.hint !== name ? option.hint : null;
        return h(
          "label",
          { class: "method" },
          radio,
          h(
            "span",
            { class: "method-text" },
            h("span", { class: "method-name" }, name),
            hint && h("span", { class: "method-hint" }, hint),
          ),
          option.last_used ? h("span", { class: "method-tag" }, "last used") : null,
        );
      }),
    );
  }

  /** Put focus on the next thing to do: the code field, or the Send code button. */
  function focusNext() {
    const option = selected();
    if (!option) return;
    if (recovery || !needsSend(option) || sentTo.size > 0) codeInput.focus();
    else sendButton.focus();
  }

  function noFactor() {
    // Nobody's fault, so no blame: what is missing, and (on the page, `canSetUp`) the way to set it up right here.
    // Focus moves first (to the way out, or to Close), and only then is the rest hidden.
    phase = "dead-end";
    started = false;
    noFactorView = true;
    show(setUpButton, Boolean(flow.canSetUp));
    (flow.canSetUp ? setUpButton : cancelButton).focus();
    // Closed without setting one up, the page says why nothing happened (not "you cancelled").
    stopReason = new ApiError({ status: 409, code: "no_second_factor", description: flow.noFactor });
    say(flow.noFactor, "info");
    render();
  }

  // ---- sending a code (email / SMS) -------------------------------------------------------------------------
  function resumeResendCooldown() {
    stopResend();
    const left = Math.ceil((resendUntil - Date.now()) / 1000);
    if (!(left > 0)) {
      resendLeft = 0;
      return;
    }
    stopResend = countdown(
      left,
      (seconds) => {
        resendLeft = seconds;
        render();
      },
      () => {
        resendLeft = 0;
        render();
        const option = selected();
        if (phase === "ready" && !recovery && needsSend(option) && !sendsExhausted) {
          announcer.textContent = "You can ask for a new code now.";
        }
      },
    );
  }

  function startResendCooldown(seconds) {
    resendUntil = seconds > 0 ? Date.now() + seconds * 1000 : 0;
    resumeResendCooldown();
    render();
  }

  async function sendCode() {
    const option = selected();
    if (!option || busy) return;
    if (resendLeft > 0) {
      // Reached by Tab and pressed: say why nothing happens (the wait is also written beside the button).
      say(`You can ask for a new code in ${formatDuration(resendLeft)}.`, "info");
      return;
    }
    if (sendsExhausted) return;
    say("");
    announcer.textContent = "";
    const round = generation;
    setBusy(true);
    try {
      const result = await flow.send(option.id);
      if (round !== generation) return;
      sentTo.add(option.id);
      const wait = Number.isFinite(result?.retry_after) ? result.retry_after : 0;
      sentNotice.textContent = `We sent a code to ${result?.sent_to ?? option.hint ?? "you"}.`;
      // Said once: where the code went, and how long until another may be sent.
      announcer.textContent =
        sentNotice.textContent + (wait > 0 ? ` You can ask for a new one in ${formatDuration(wait)}.` : "");
      if (result?.sends_remaining === 0) sendsExhausted = true;
      setBusy(false);
      startResendCooldown(wait);
      codeInput.focus();
    } catch (error) {
      setBusy(false);
      if (round === generation) handleError(error, { during: "send" });
    }
  }

  // ---- finishing ----------------------------------------------------------------------------------------------
  async function verify(event) {
    event.preventDefault();
    if (busy || phase !== "ready" || isDisabled(verifyButton)) return;
    const code = codeInput.value.replace(/\s+/g, "");
    if (!code) {
      markInvalid(recovery ? "Enter a recovery code first." : "Enter the code first.");
      codeInput.focus();
      return;
    }
    // Six digits normally; a recovery code also has letters and a hyphen (the BFF accepts [A-Za-z0-9-]).
    if (!/^[A-Za-z0-9-]+$/.test(code)) {
      markInvalid(
        recovery
          ? "A recovery code has only letters, digits and a hyphen. Check it and try again."
          : "The code has only digits. Check it and try again.",
      );
      codeInput.focus();
      return;
    }
    if (!recovery && !/^[0-9]+$/.test(code)) {
      markInvalid('This code has letters. If it is a recovery code, choose "Use a recovery code" below.');
      codeInput.focus();
      return;
    }
    say("");
    const round = generation;
    setBusy(true);
    try {
      // method_id only labels the result ("confirmed with email"); FusionAuth accepts any valid code of the person.
      // A recovery code belongs to no method, so none is named.
      const result = await flow.finish(code, recovery ? null : selected()?.id);
      setBusy(false);
      if (round !== generation) return; // cancelled meanwhile; the next request will see what the server recorded
      finish(result);
    } catch (error) {
      setBusy(false);
      if (round === generation) handleError(error, { during: "finish" });
    }
  }

  // ---- errors -------------------------------------------------------------------------------------------------
  function restartWith(message, buttonLabel = flow.restartLabel ?? "Start again", tone = "warning") {
    // Focus moves to the button first; only then is the code field hidden.
    phase = "restart";
    started = false; // the server has discarded the challenge already
    waitText.textContent = "";
    restartButton.textContent = buttonLabel;
    show(panel, true);
    show(restartButton, true);
    restartButton.focus();
    say(message, tone);
    render();
  }

  /**
   * Confirming is paused until a known time (messages.js's PAUSES, the answers that are a wait with an end): say it
   * once (with when), count down quietly, then offer to go on by itself.
   */
  function pause(error) {
    cancelButton.focus();
    stopWait();
    phase = "blocked";
    started = false;
    stopReason = error;
    waitText.textContent = "";
    restartButton.textContent = flow.restartLabel ?? "Try again";
    show(restartButton, false);
    // waitOut fixes the end on the error first: the alert below, and the page's sentence after Close, name it.
    stopWait = waitOut(
      error,
      (left) => {
        waitText.textContent = `You can try again in ${formatWait(left)}.`;
      },
      () => {
        // Over: the dialog comes back by itself, and says so once.
        stopReason = null;
        waitText.textContent = "You can try again now.";
        say("");
        show(restartButton, true);
        announcer.textContent = "You can try again now.";
      },
    );
    say(pausedMessage(error), "warning");
    render();
  }

  function deadEnd(error, message) {
    // The account itself can't go on (locked, expired, ...): starting again won't help, so no button.
    cancelButton.focus();
    phase = "dead-end";
    started = false;
    stopReason = error;
    say(message);
    render();
  }

  function handleError(error, { during }) {
    const code = error?.code;
    const body = error?.body ?? {};
    if (code === "login_required") {
      // The session is gone: nothing to confirm any more. The page takes over (signed-out view).
      close({ error });
      return;
    }
    if (code === "no_second_factor") return noFactor();
    if (PAUSES.has(code)) return pause(error);
    if (code === "challenge_expired") return restartWith("Time ran out for this code. Start again to get a new one.");
    if (code === "transaction_expired") {
      // What was to be confirmed is no longer waiting: only sending it again makes a new one.
      return deadEnd(error, "This is no longer waiting to be confirmed. Close this, then send it again.");
    }
    if (code === "no_challenge") return restartWith("This code request is no longer active. Start again.");
    if (code === "invalid_code") {
      const left = body.attempts_remaining;
      if (left === 0) {
        return restartWith("That code didn't work, and that was the last try for this code. Start again for a new one.");
      }
      markInvalid(
        Number.isFinite(left)
          ? `That code didn't work. ${left} ${left === 1 ? "attempt" : "attempts"} left.`
          : "That code didn't work. Check it and try again.",
      );
      codeInput.select();
      codeInput.focus();
      return;
    }
    if (code === "resend_too_soon") {
      // The server remembers a code sent a moment ago (another tab, or before a reload): wait for it, calmly.
      startResendCooldown(body.retry_after);
      say(
        Number.isFinite(body.retry_after)
          ? `A code was sent a moment ago. You can ask for another in ${formatDuration(body.retry_after)}.`
          : "A code was sent a moment ago. You can ask for another shortly.",
        "info",
      );
      return;
    }
    if (code === "too_many_sends") {
      sendsExhausted = true;
      render();
      say(
        "No more codes can be sent this time. Use the last code you received, or a recovery code, or cancel and " +
          "try later.",
        "warning",
      );
      return;
    }
    if (code === "invalid_method") {
      say("That way to get a code can't be used right now. Choose another one.");
      return;
    }
    if (code === "step_up_in_progress") {
      say("We're still checking the code you sent. Give it a moment.", "info");
      return;
    }
    if (Object.hasOwn(ACCOUNT_PROBLEMS, code)) return deadEnd(error, ACCOUNT_PROBLEMS[code]);
    if (code === "step_up_rejected") {
      return restartWith("That didn't go through. Start again, or choose another way to get a code.");
    }
    const message = code === "network_error" ? NETWORK_MESSAGE : errorMessage(error);
    if (during === "start") {
      // Nothing to work with yet: say what happened and offer to try again.
      restartWith(message, "Try again", "error");
    } else {
      say(message);
      focusNext();
    }
  }

  // ---- opening and closing ------------------------------------------------------------------------------------
  function close({ result = null, error = null } = {}) {
    if (!shell.isOpen) return;
    // Closed from a state the person could not get past (no way to confirm, paused, refused): that is the answer,
    // not "cancelled", so the page can say what happened without blaming anyone.
    const reason = error ?? (result ? null : stopReason);
    generation += 1;
    stopResend(); // the wait itself (resendUntil) is kept for the next opening
    stopWait();
    if (started && !result) discard();
    started = false;
    // Focus goes back where it was (the Send button, typically), whatever closed the dialog.
    shell.settle({ result, error: reason });
  }

  function finish(result) {
    close({ result });
  }

  /** Discard the half-done challenge. Fire and forget: a failure here changes nothing for the person. */
  function discard() {
    flow.cancel?.().catch(() => {});
  }

  form.addEventListener("submit", verify);
  sendButton.addEventListener("click", sendCode);
  codeSwitch.addEventListener("click", () => {
    setCodeMode(!recovery);
    say("");
    render();
    focusNext();
  });
  // Where nothing can be started again here (a sign-in: the password comes first), the button closes the dialog.
  restartButton.addEventListener("click", () => (flow.restartLabel ? close() : start()));
  cancelButton.addEventListener("click", () => close());
  setUpButton.addEventListener("click", () => close({ result: { setUp: true } }));

  return {
    element: dialog,
    /** Ask for a code. Step-up: `maxAge` (seconds) only shapes the explanation; sign-in: `challenge`. */
    open(options = {}) {
      if (shell.isOpen) return shell.open();
      openedWith = options;
      intro.textContent = flow.intro(options);
      const confirmation = flow.confirms?.(options) ?? null;
      confirms.textContent = confirmation ?? "";
      show(confirms, Boolean(confirmation));
      // Rendered in its loading state *before* it is shown, so showModal() never lands on a control that is about
      // to disappear; the heading takes focus until the options arrive (start() then moves it on).
      generation += 1;
      resetRound();
      const promise = shell.open();
      title.focus();
      start();
      return promise;
    },
  };
}
