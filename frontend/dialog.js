// The second-factor dialog, one for both places a code is asked for:
//
// - step-up (`createStepUpDialog`): a fresh second factor when the BFF answers a request with the RFC 9470
//   challenge; a challenge bound to a transaction first says what is confirmed ("Confirm: singing telegram to
//   Bob — “Happy birthday…”"). `open()` resolves with the new step-up status ({ active, expires_at, method }; not
//   active after a bound step-up, which elevates nothing) once the user has confirmed, with { setUp: true } when
//   someone without a second factor chose to set one up (the page walks them through it, then the action goes
//   again), or with null when they cancel; it rejects with the ApiError when the session is gone (login_required),
//   so the page can show the signed-out view;
// - sign-in (`createSignInDialog`): the second factor FusionAuth asks for after the password (its 242). `open()`
//   resolves with the new session, or null when the person cancels or must enter their password again.
//
// Both run the same machine in the BFF, so they share every piece here: methods, sending, codes, limits and errors;
// a `flow` says where the calls go. A native <dialog> opened with showModal() gives us the focus trap, Escape to
// cancel and an inert page behind it for free; we only put focus back where it was when it closes.

import { countdown, formatDuration, formatWait, h, modal, show } from "./dom.js";
import { ACCOUNT_PROBLEMS, errorMessage, NETWORK_MESSAGE } from "./messages.js";

const METHOD_NAMES = { authenticator: "Authenticator app", email: "Email", sms: "Text message" };
const CODE_HINTS = {
  authenticator: "Enter the 6-digit code your authenticator app shows now.",
  email: "Enter the code from the email we sent you.",
  sms: "Enter the code from the text message we sent you.",
};

/**
 * The step-up dialog. A challenge bound to a transaction says what is being confirmed, before any code. Someone
 * without a second factor is offered to set one up (`canSetUp`), which resolves open() with { setUp: true }.
 */
export function createStepUpDialog({ api, canSetUp = false }) {
  return createTwoFactorDialog({
    prefix: "step-up",
    canSetUp,
    title: "Confirm it's you",
    intro: ({ maxAge, transaction } = {}) => {
      // Bound: this second factor confirms that one request, and only it (the server's summary says which).
      if (transaction) return "Your second factor confirms exactly this, and nothing else:";
      // max_age is how fresh the second factor must be (RFC 9470); whether one confirmation covers one action or
      // every action for that long is the server's business (step_up.single_use), so don't promise either.
      return Number.isFinite(maxAge) && maxAge > 0
        ? `This action needs a second factor confirmed in the last ${formatDuration(maxAge)}.`
        : "This action needs a fresh second factor.";
    },
    // The person's own words (a recipient, a message), built into a sentence by the server: shown as text only.
    confirms: ({ transaction } = {}) => (transaction ? `Confirm: ${transaction.summary}` : null),
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
 * The second factor of a native sign-in. `open({ challenge })` takes the methods that came back with the password;
 * there is nothing to start, and a challenge that is gone can only be replaced by signing in again.
 */
export function createSignInDialog({ api }) {
  return createTwoFactorDialog({
    prefix: "sign-in-factor",
    title: "One more step to sign in",
    intro: () => "Your account asks for a second factor when you sign in.",
    start: ({ challenge }) => Promise.resolve(challenge),
    send: (methodId) => api.nativeSignIn.send(methodId),
    finish: (code, methodId) => api.nativeSignIn.finish(code, methodId),
    cancel: null, // the waiting sign-in expires by itself; nothing to discard
    restartLabel: "Sign in again",
  });
}

function createTwoFactorDialog(flow) {
  const prefix = flow.prefix;
  // ---- the markup, built once -------------------------------------------------------------------------------
  const title = h("h2", { id: `${prefix}-title`, class: "dialog-title" }, flow.title);
  const intro = h("p", { id: `${prefix}-intro`, class: "dialog-intro" });
  const confirms = h("p", { id: `${prefix}-confirms`, class: "dialog-confirms", "data-testid": `${prefix}-confirm` });
  const loading = h("p", { class: "loading", "data-testid": `${prefix}-loading` }, "Getting your sign-in options…");

  const methodList = h("div", { class: "method-list" });
  const methods = h(
    "fieldset",
    { class: "methods", "data-testid": `${prefix}-methods` },
    h("legend", {}, "Get a code from"),
    methodList,
  );

  const sendButton = h("button", { type: "button", class: "button secondary", "data-testid": `${prefix}-send` });
  const sentNotice = h("p", { class: "sent-notice", role: "status", "data-testid": `${prefix}-sent` });
  const sendRow = h("div", { class: "send-row" }, sendButton, sentNotice);

  const codeInput = h("input", {
    id: `${prefix}-code`,
    name: "code",
    type: "text",
    class: "code-input",
    autocomplete: "one-time-code",
    inputmode: "numeric",
    pattern: "[0-9]*",
    maxlength: 10,
    spellcheck: "false",
    "aria-describedby": `${prefix}-code-hint`,
    "data-testid": `${prefix}-code`,
  });
  const codeHint = h("p", { id: `${prefix}-code-hint`, class: "field-hint" });
  const codeRow = h(
    "div",
    { class: "field code-row" },
    h("label", { for: `${prefix}-code` }, "Verification code"),
    codeHint,
    codeInput,
  );

  // Errors and state changes are announced: role="alert" for problems. Countdowns are NOT inside live regions
  // (a screen reader would read every second); `announcer` says once when a wait is over.
  const alert = h("p", { class: "dialog-alert", role: "alert", "data-testid": `${prefix}-error` });
  const announcer = h("p", { class: "visually-hidden", "aria-live": "polite" });

  const waitText = h("p", { class: "wait", "data-testid": `${prefix}-wait` });
  const restartButton = h(
    "button",
    { type: "button", class: "button secondary", "data-testid": `${prefix}-restart` },
    "Start again",
  );
  const panel = h("div", { class: "dialog-panel" }, waitText, restartButton);
  // No second factor yet: the way out of the dead end (the page walks through adding an authenticator app).
  const setUpButton = h(
    "button",
    { type: "button", class: "button primary", "data-testid": `${prefix}-set-up`, hidden: true },
    "Set up an authenticator app",
  );

  const cancelButton = h(
    "button",
    { type: "button", class: "button ghost", "data-testid": `${prefix}-cancel` },
    "Cancel",
  );
  const verifyButton = h(
    "button",
    { type: "submit", class: "button primary", "data-testid": `${prefix}-verify` },
    "Verify",
  );

  const form = h(
    "form",
    { class: "dialog-form", novalidate: true },
    h("div", { class: "dialog-heading" }, h("span", { class: "dialog-icon", "aria-hidden": "true" }), title),
    intro,
    confirms,
    loading,
    methods,
    sendRow,
    codeRow,
    alert,
    panel,
    setUpButton,
    announcer,
    h("div", { class: "dialog-actions" }, cancelButton, verifyButton),
  );
  const dialog = h(
    "dialog",
    {
      class: "step-up-dialog",
      "aria-labelledby": `${prefix}-title`,
      "aria-describedby": `${prefix}-intro ${prefix}-confirms`,
      "data-testid": `${prefix}-dialog`,
    },
    form,
  );
  // In the document only while open: the page then has exactly one "Verification code" field, whichever dialog.

  // ---- state ------------------------------------------------------------------------------------------------
  // phase: "loading"
  //      | "ready"    choose a method, (send and) enter a code
  //      | "restart"  the challenge is gone (expired, too many wrong codes) or could not start: offer to start again
  //      | "blocked"  too many wrong codes recently: wait for the countdown
  //      | "dead-end" no second factor, or the account itself is refused: only Close
  let phase = "loading";
  let options = []; // [{ id, method, hint, last_used }]
  let selectedId = null;
  let sentTo = new Set(); // method ids a code was sent to during this challenge
  let resendLeft = 0; // seconds until another send is allowed
  let sendsExhausted = false;
  let busy = false;
  let started = false; // a challenge exists on the server (so Cancel discards it)
  let stopResend = () => {};
  let stopWait = () => {};
  // Bumped by every start() and close(): an answer that arrives for an older round (the person cancelled or
  // started again while it was on its way) must not touch the dialog.
  let generation = 0;
  let openedWith = {}; // what open() was given: passed to flow.start() again by "Start again"
  // Escape closes a modal <dialog> by itself; whatever closed it, an unfinished step-up counts as cancelled. (The
  // <dialog>'s own "close" event after close() comes later, as a task: by then this dialog may be open again for the
  // next challenge, several requests each confirmed in turn, and modal() ignores that stale event.)
  const shell = modal(dialog, { onDismiss: () => close() });

  const selected = () => options.find((option) => option.id === selectedId) ?? null;
  const needsSend = (option) => option && option.method !== "authenticator";

  function render() {
    const option = selected();
    const ready = phase === "ready";
    const codeVisible = ready && option && (!needsSend(option) || sentTo.has(option.id));
    show(loading, phase === "loading");
    show(methods, ready && options.length > 0);
    show(sendRow, ready && needsSend(option));
    show(codeRow, codeVisible);
    show(panel, phase === "restart" || phase === "blocked");
    show(verifyButton, phase === "ready" || phase === "loading");
    verifyButton.disabled = busy || !codeVisible;
    form.setAttribute("aria-busy", String(busy || phase === "loading"));
    cancelButton.textContent = phase === "dead-end" ? "Close" : "Cancel";

    if (option) {
      codeHint.textContent = CODE_HINTS[option.method] ?? "Enter the code you received.";
      if (resendLeft > 0) sendButton.textContent = `Resend in ${resendLeft} s`;
      else sendButton.textContent = sentTo.has(option.id) ? "Resend code" : "Send code";
      sendButton.disabled = busy || resendLeft > 0 || sendsExhausted;
    }
  }

  /** Put a message in the alert region (announced); `tone` only changes its colour. */
  function say(message, tone = "error") {
    alert.textContent = message;
    alert.dataset.tone = tone;
  }

  function setBusy(value) {
    busy = value;
    render();
  }

  // ---- starting a challenge ---------------------------------------------------------------------------------
  async function start() {
    const round = ++generation;
    started = false;
    show(setUpButton, false);
    stopResend();
    stopWait();
    phase = "loading";
    options = [];
    selectedId = null;
    sentTo = new Set();
    resendLeft = 0;
    sendsExhausted = false;
    codeInput.value = "";
    sentNotice.textContent = "";
    say("");
    render();
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
      focusNext();
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
          "data-testid": `${prefix}-method-${option.method}`,
          onchange: () => {
            selectedId = option.id;
            say("");
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
    if (!needsSend(option) || sentTo.has(option.id)) codeInput.focus();
    else sendButton.focus();
  }

  function noFactor() {
    phase = "dead-end";
    if (flow.canSetUp) {
      say(
        "Your account doesn't have a second factor yet. Set up an authenticator app now: it takes a minute, " +
          "and then this continues where you left off.",
        "info",
      );
      render();
      show(setUpButton, true);
      setUpButton.focus();
      return;
    }
    say(
      "Your account doesn't have a second factor yet. Set one up in FusionAuth first (an authenticator app, " +
        "email or text message codes), then try again.",
      "info",
    );
    render();
    cancelButton.focus();
  }

  // ---- sending a code (email / SMS) -------------------------------------------------------------------------
  function startResendCooldown(seconds) {
    stopResend();
    if (!(seconds > 0)) {
      resendLeft = 0;
      render();
      return;
    }
    stopResend = countdown(
      seconds,
      (left) => {
        resendLeft = left;
        render();
      },
      () => {
        resendLeft = 0;
        render();
        if (phase === "ready" && !sendsExhausted) announcer.textContent = "You can ask for a new code now.";
      },
    );
  }

  async function sendCode() {
    const option = selected();
    if (!option || busy || resendLeft > 0) return;
    say("");
    announcer.textContent = "";
    const round = generation;
    setBusy(true);
    try {
      const result = await flow.send(option.id);
      if (round !== generation) return;
      sentTo.add(option.id);
      sentNotice.textContent = `We sent a code to ${result?.sent_to ?? option.hint ?? "you"}.`;
      if (result?.sends_remaining === 0) sendsExhausted = true;
      setBusy(false);
      startResendCooldown(result?.retry_after ?? 0);
      codeInput.focus();
    } catch (error) {
      setBusy(false);
      if (round === generation) handleError(error, { during: "send" });
    }
  }

  // ---- finishing ----------------------------------------------------------------------------------------------
  async function verify(event) {
    event.preventDefault();
    if (busy || phase !== "ready") return;
    const code = codeInput.value.replace(/\s+/g, "");
    if (!code) {
      say("Enter the code first.");
      codeInput.focus();
      return;
    }
    // Six digits normally; FusionAuth's recovery codes also have letters (the BFF accepts [A-Za-z0-9-]).
    if (!/^[A-Za-z0-9-]+$/.test(code)) {
      say("The code has only digits (or letters, for a recovery code). Check it and try again.");
      codeInput.focus();
      return;
    }
    say("");
    const round = generation;
    setBusy(true);
    try {
      // method_id only labels the result ("confirmed with email"); FusionAuth accepts any valid code of the user.
      const result = await flow.finish(code, selected()?.id);
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
    stopResend();
    phase = "restart";
    started = false; // the server has discarded the challenge already
    waitText.textContent = "";
    restartButton.textContent = buttonLabel;
    show(restartButton, true);
    say(message, tone);
    render();
    restartButton.focus();
  }

  function blocked(
    retryAfter,
    message = "Too many wrong codes recently. For your safety, confirming is paused for a while.",
  ) {
    stopResend();
    stopWait();
    phase = "blocked";
    started = false;
    say(message, "warning");
    show(restartButton, false);
    restartButton.textContent = "Try again";
    render();
    cancelButton.focus();
    stopWait = countdown(
      Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : 60,
      (left) => {
        waitText.textContent = `You can try again in ${formatWait(left)}.`;
      },
      () => {
        waitText.textContent = "";
        show(restartButton, true);
        announcer.textContent = "You can try again now.";
      },
    );
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
    if (code === "step_up_blocked") return blocked(body.retry_after);
    if (code === "too_many_starts") {
      return blocked(body.retry_after, "You've started confirming many times recently. Please wait a little.");
    }
    if (code === "challenge_expired") return restartWith("This challenge expired — start again.");
    if (code === "transaction_expired") {
      // What was to be confirmed is no longer waiting: only sending it again makes a new one.
      stopResend();
      phase = "dead-end";
      started = false;
      say("This confirmation is no longer pending. Close this, then send it again.", "warning");
      render();
      cancelButton.focus();
      return;
    }
    if (code === "no_challenge") return restartWith("This challenge is no longer active — start again.");
    if (code === "invalid_code") {
      const left = body.attempts_remaining;
      if (left === 0) return restartWith("Too many wrong codes — start again to get a new challenge.");
      say(
        Number.isFinite(left)
          ? `That code didn't work. ${left} ${left === 1 ? "attempt" : "attempts"} left.`
          : "That code didn't work. Check it and try again.",
      );
      codeInput.select();
      codeInput.focus();
      return;
    }
    if (code === "resend_too_soon") {
      say("Please wait a moment before asking for another code.", "warning");
      startResendCooldown(body.retry_after);
      return;
    }
    if (code === "too_many_sends") {
      sendsExhausted = true;
      render();
      say(
        "No more codes can be sent for this attempt. Use the last code you received, or cancel and try later.",
        "warning",
      );
      return;
    }
    if (code === "invalid_method") {
      say("That method can't be used right now. Choose another one.");
      return;
    }
    if (code === "step_up_in_progress") {
      say("We're still checking the code you sent. Give it a moment.", "info");
      return;
    }
    if (Object.hasOwn(ACCOUNT_PROBLEMS, code)) {
      // The account itself can't go on (locked, expired, ...): starting again won't help, so no button.
      stopResend();
      phase = "dead-end";
      started = false;
      say(ACCOUNT_PROBLEMS[code]);
      render();
      cancelButton.focus();
      return;
    }
    if (code === "step_up_rejected") {
      return restartWith("The sign-in service didn't accept that. Start again, or try another method.");
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
    generation += 1;
    stopResend();
    stopWait();
    if (started && !result) discard();
    started = false;
    // Focus goes back where it was (the Send button, typically), whatever closed the dialog.
    shell.settle({ result, error });
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
  // Where nothing can be started again here (a sign-in: the password comes first), the button closes the dialog.
  restartButton.addEventListener("click", () => (flow.restartLabel ? close() : start()));
  cancelButton.addEventListener("click", () => close());
  setUpButton.addEventListener("click", () => close({ result: { setUp: true } }));

  return {
    element: dialog,
    /** Ask for a second factor. Step-up: `maxAge` (seconds) only shapes the explanation; sign-in: `challenge`. */
    open(options = {}) {
      if (shell.isOpen) return shell.open();
      openedWith = options;
      intro.textContent = flow.intro(options);
      const confirmation = flow.confirms?.(options) ?? null;
      confirms.textContent = confirmation ?? "";
      show(confirms, Boolean(confirmation));
      const promise = shell.open();
      start();
      return promise;
    },
  };
}
