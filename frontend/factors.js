// The person's own second factors: the dialog that adds an authenticator app, and the one that removes a factor.
//
// Adding (`createEnrolmentDialog`) walks through what the BFF asks for, in order:
//   1. a recent sign-in: the password again (the app's own form), or FusionAuth's page (a full-page trip there and
//      back; the page remembers where it was, see app.js);
//   2. a step-up, when the person has a factor already (api.js opens the step-up dialog on top, by itself);
//   3. the QR code (and the key to type, for an app on another device), then a code from the app;
//   4. for a first factor, the recovery codes: shown once, to copy or download, then back to what they were doing.
// Removing (`createRemovalDialog`) says what the person loses, asks for a current code of that factor (or a recovery
// code) and sends it; api.js has them confirm the removal with a step-up first.
//
// Both are native modal <dialog>s (focus trap, Escape, inert page for free) built once with h(); every value the
// server sends is shown as text, the QR code as an <img> of the data: URI the BFF rendered.

import { codeField, dialogAlert, h, modal, show, waitOut } from "./dom.js";
import {
  ACCOUNT_PROBLEMS,
  errorMessage,
  NETWORK_MESSAGE,
  nativeSignInMessage,
  PAUSES,
  pausedMessage,
} from "./messages.js";

const RECOVERY_FILE = "singing-telegrams-recovery-codes.txt";

/** "JBSWY3DPEHPK3PXP" -> "JBSW Y3DP EHPK 3PXP": easier to type from another screen. */
function grouped(secret) {
  return secret.replace(/(.{4})(?=.)/g, "$1 ");
}

function dialogShell(prefix, title, ...content) {
  // tabindex=-1: the heading holds focus while the dialog loads, so focus is never on <body> (WCAG 2.4.3).
  const heading = h("h2", { id: `${prefix}-title`, class: "dialog-title", tabindex: "-1" }, title);
  const form = h(
    "form",
    { class: "dialog-form", novalidate: true },
    h("div", { class: "dialog-heading" }, h("span", { class: "dialog-icon", "aria-hidden": "true" }), heading),
    ...content,
  );
  const dialog = h(
    "dialog",
    { class: "step-up-dialog factor-dialog", "aria-labelledby": `${prefix}-title`, "data-testid": `${prefix}-dialog` },
    form,
  );
  return { dialog, form, heading };
}

/** The code as typed, without spaces; null (and a message, tied to the field) when it cannot be one. */
function cleanCode(field, invalid) {
  const code = field.input.value.replace(/\s+/g, "");
  if (!code) {
    invalid("Enter the code first.");
    field.input.focus();
    return null;
  }
  if (!/^[A-Za-z0-9-]+$/.test(code)) {
    invalid("The code has only digits (or letters and a hyphen, for a recovery code). Check it and try again.");
    field.input.focus();
    return null;
  }
  return code;
}

/**
 * Adding an authenticator app. `open({ account, returned })` resolves true once it is added (and the recovery codes,
 * if any, were seen), false when the person stops. `account` is their login id for the password form (the email);
 * `returned` says they just came back from FusionAuth's page. Options:
 *   secondFactor(challenge) -> session | null   the sign-in dialog, when the password asks for a second factor too;
 *   signInAgain()                               the full-page trip to FusionAuth's page (the page saves its state).
 */
export function createEnrolmentDialog({ api, secondFactor, signInAgain }) {
  const prefix = "enrol";
  const intro = h("p", { id: `${prefix}-intro`, class: "dialog-intro", "data-testid": `${prefix}-intro` });
  const loading = h("p", { class: "loading", "data-testid": `${prefix}-loading` }, "Getting a new key for your app…");

  // ---- step 1: a recent sign-in --------------------------------------------------------------------------------
  const accountField = h("input", {
    id: `${prefix}-login-id`,
    name: "username",
    type: "text",
    autocomplete: "username",
    readonly: true,
    "data-testid": `${prefix}-login-id`,
  });
  const password = h("input", {
    id: `${prefix}-password`,
    name: "password",
    type: "password",
    autocomplete: "current-password",
    maxlength: 1024,
    "data-testid": `${prefix}-password`,
  });
  const passwordButton = h(
    "button",
    { type: "submit", class: "button primary", "data-testid": `${prefix}-password-submit` },
    "Continue",
  );
  const passwordForm = h(
    "div",
    { class: "reauth-native", "data-testid": `${prefix}-reauth-native` },
    h("div", { class: "field" }, h("label", { for: `${prefix}-login-id` }, "Email"), accountField),
    h("div", { class: "field" }, h("label", { for: `${prefix}-password` }, "Password"), password),
    passwordButton,
  );
  const hostedButton = h(
    "button",
    { type: "button", class: "button secondary", "data-testid": `${prefix}-sign-in-again` },
    "Sign in again on FusionAuth's page",
  );
  const reauth = h("div", { class: "reauth", "data-testid": `${prefix}-reauth` }, passwordForm, hostedButton);

  // ---- step 3: scan and confirm ----------------------------------------------------------------------------------
  const qr = h("img", {
    class: "qr-code",
    alt: "QR code to scan with your authenticator app",
    width: 180,
    height: 180,
    "data-testid": `${prefix}-qr`,
  });
  const secretText = h("code", { class: "secret-key", "data-testid": `${prefix}-secret` });
  const openLink = h(
    "a",
    { class: "otpauth-link", "data-testid": `${prefix}-otpauth` },
    "Open in an authenticator app on this device",
  );
  const nameInput = h("input", {
    id: `${prefix}-name`,
    name: "factor-name",
    type: "text",
    maxlength: 64,
    autocomplete: "off",
    placeholder: "Phone",
    "data-testid": `${prefix}-name`,
  });
  const code = codeField(prefix, {
    label: "Code from the app",
    hint: "Enter the 6-digit code your app shows for Singing Telegrams.",
  });
  const confirmButton = h(
    "button",
    { type: "submit", class: "button primary", "data-testid": `${prefix}-confirm` },
    "Add authenticator",
  );
  const scan = h(
    "div",
    { class: "scan", "data-testid": `${prefix}-scan` },
    h(
      "div",
      { class: "scan-top" },
      qr,
      h(
        "div",
        {},
        h(
          "ol",
          { class: "steps" },
          h("li", {}, "Open your authenticator app and add an account."),
          h("li", {}, "Scan this code."),
        ),
        h("p", { class: "field-hint" }, "Can't scan it? Enter this key in the app instead:"),
        secretText,
        h("p", { class: "small-print" }, openLink),
      ),
    ),
    h(
      "div",
      { class: "field" },
      h("label", { for: `${prefix}-name` }, "A name for it (optional)"),
      h("p", { class: "field-hint" }, "To tell your apps apart later, say “Work phone”."),
      nameInput,
    ),
    code.row,
    confirmButton,
  );

  // ---- step 4: recovery codes ------------------------------------------------------------------------------------
  const codesList = h("ol", { class: "recovery-codes", "data-testid": `${prefix}-recovery-codes` });
  const copyButton = h("button", { type: "button", class: "button secondary small", "data-testid": `${prefix}-copy` }, "Copy");
  const downloadButton = h(
    "button",
    { type: "button", class: "button secondary small", "data-testid": `${prefix}-download` },
    "Download as text",
  );
  const copied = h("p", { class: "sent-notice", role: "status", "data-testid": `${prefix}-copied` });
  const savedBox = h("input", { id: `${prefix}-saved`, type: "checkbox", "data-testid": `${prefix}-saved` });
  const recovery = h(
    "div",
    { class: "recovery", "data-testid": `${prefix}-recovery` },
    h(
      "p",
      {},
      "If you lose your phone, each of these codes works once instead of a code from the app. This is the only " +
        "time they are shown: keep them somewhere safe, away from your phone.",
    ),
    codesList,
    h("div", { class: "send-row" }, copyButton, downloadButton, copied),
    h("label", { class: "checkbox" }, savedBox, " I've stored these codes somewhere safe"),
  );

  const alert = dialogAlert(prefix);
  const restartButton = h(
    "button",
    { type: "button", class: "button secondary", "data-testid": `${prefix}-restart` },
    "Start again",
  );
  const cancelButton = h("button", { type: "button", class: "button ghost", "data-testid": `${prefix}-cancel` }, "Cancel");
  const doneButton = h("button", { type: "button", class: "button primary", "data-testid": `${prefix}-done` }, "Continue");

  const { dialog, form, heading } = dialogShell(
    prefix,
    "Set up an authenticator app",
    intro,
    loading,
    reauth,
    scan,
    recovery,
    alert.element,
    h("div", { class: "dialog-panel" }, restartButton),
    h("div", { class: "dialog-actions" }, cancelButton, doneButton),
  );

  // phase: "loading" | "reauth" | "scan" | "codes" (the recovery codes, or "added" without them) | "restart" | "stuck"
  let phase = "loading";
  let busy = false;
  let opened = {};
  let started = false; // an enrolment waits on the server (Cancel discards it)
  let codes = [];
  let generation = 0;
  let stopWait = () => {};
  // Escape (the dialog closing by itself): added once the codes were seen, else stopped.
  const shell = modal(dialog, { onDismiss: () => close({ result: phase === "codes" }) });

  const say = alert.say;
  // A wrong code: said, and tied to the field (aria-invalid, and read with it).
  const invalid = (message) => alert.invalid(code, message);

  function render() {
    show(loading, phase === "loading");
    show(reauth, phase === "reauth");
    show(scan, phase === "scan");
    show(recovery, phase === "codes" && codes.length > 0);
    show(restartButton.parentElement, phase === "restart");
    show(doneButton, phase === "codes");
    // Once added, there is nothing to cancel: only Continue, after the codes were seen.
    show(cancelButton, phase !== "codes");
    // aria-disabled, not disabled: the button keeps focus and its place in the Tab order, and says why when pressed.
    doneButton.setAttribute("aria-disabled", String(codes.length > 0 && !savedBox.checked));
    cancelButton.textContent = phase === "stuck" ? "Close" : "Cancel";
    confirmButton.setAttribute("aria-disabled", String(busy));
    passwordButton.setAttribute("aria-disabled", String(busy));
    form.setAttribute("aria-busy", String(busy || phase === "loading"));
  }

  function setBusy(value) {
    busy = value;
    render();
  }

  async function start() {
    const round = ++generation;
    phase = "loading";
    started = false;
    stopWait();
    say("");
    code.clearInvalid();
    intro.textContent = "An app on your phone makes a new code every 30 seconds; you'll type one whenever we ask.";
    render();
    try {
      // A step-up first, for someone who has a factor: api.js asks for it and sends this again.
      const result = await api.factors.startAuthenticator();
      if (round !== generation) return;
      started = true;
      qr.src = result.qr_code;
      secretText.textContent = grouped(String(result.secret ?? ""));
      openLink.href = result.otpauth_uri;
      code.input.value = "";
      phase = "scan";
      render();
      code.input.focus();
    } catch (error) {
      if (round === generation) await handleStartError(error);
    }
  }

  async function handleStartError(error) {
    if (error?.code === "reauthentication_required") return askToSignInAgain(error);
    if (error?.code === "step_up_cancelled") {
      return stuck("Confirming was cancelled, so nothing was added. Start again when you're ready.", true);
    }
    handleError(error);
  }

  async function askToSignInAgain(error) {
    let ways = ["hosted"];
    try {
      const listed = await api.factors.list();
      if (Array.isArray(listed?.enrolment?.reauthenticate)) ways = listed.enrolment.reauthenticate;
    } catch {
      // Offer FusionAuth's page, which always works.
    }
    const minutes = Math.max(1, Math.round((error?.body?.max_age ?? 300) / 60));
    intro.textContent = opened.returned
      ? "FusionAuth's page didn't ask for your password again, so this can't go on yet. Please try once more."
      : `For your safety, adding a way to confirm it's you needs a sign-in from the last ${minutes} minutes. ` +
        "Enter your password again.";
    const native = ways.includes("native") && Boolean(opened.account);
    show(passwordForm, native);
    accountField.value = opened.account ?? "";
    password.value = "";
    hostedButton.className = native ? "button ghost" : "button primary";
    phase = "reauth";
    render();
    (native ? password : hostedButton).focus();
  }

  async function signInWithPassword() {
    if (busy) return;
    if (!password.value) {
      say("Enter your password.");
      password.focus();
      return;
    }
    say("");
    setBusy(true);
    try {
      let session = await api.nativeSignIn.login(opened.account, password.value);
      if (!session?.authenticated && session?.two_factor) session = await secondFactor(session.two_factor);
      setBusy(false);
      if (!session?.authenticated) {
        say("You're not signed in again yet: the second step wasn't finished.");
        return;
      }
      password.value = "";
      start();
    } catch (error) {
      setBusy(false);
      password.value = "";
      say(nativeSignInMessage(error));
      password.focus();
    }
  }

  async function confirm() {
    if (busy) return;
    const value = cleanCode(code, invalid);
    if (!value) return;
    say("");
    const round = generation;
    setBusy(true);
    try {
      const result = await api.factors.confirmAuthenticator(value, nameInput.value.trim() || null);
      setBusy(false);
      if (round !== generation) return;
      started = false;
      codes = Array.isArray(result?.recovery_codes) ? result.recovery_codes.map(String) : [];
      codesList.replaceChildren(...codes.map((item) => h("li", {}, h("code", {}, item))));
      savedBox.checked = false;
      copied.textContent = "";
      intro.textContent = codes.length
        ? "Your authenticator app is set up. One more thing: your recovery codes."
        : "Your authenticator app is set up.";
      phase = "codes";
      render();
      (codes.length ? copyButton : doneButton).focus();
    } catch (error) {
      setBusy(false);
      if (round === generation) handleError(error);
    }
  }

  /**
   * A pause with an end (messages.js's PAUSES: wrong codes here count with the step-up's, and FusionAuth's lock
   * applies too): said once, with when; then Start again comes back by itself, and says so.
   */
  function pause(error) {
    stopWait();
    // waitOut fixes the end on the error first, so the sentence and the countdown name the same moment.
    stopWait = waitOut(
      error,
      () => {},
      () => {
        if (phase !== "stuck") return;
        phase = "restart";
        render();
        say("You can try again now.", "info");
      },
    );
    stuck(pausedMessage(error));
  }

  function stuck(message, canRestart = false, tone = "warning") {
    started = false;
    phase = canRestart ? "restart" : "stuck";
    say(message, tone);
    render();
    (canRestart ? restartButton : cancelButton).focus();
  }

  function handleError(error) {
    const code_ = error?.code;
    const body = error?.body ?? {};
    if (code_ === "login_required") return close({ error });
    if (code_ === "invalid_code") {
      const left = body.attempts_remaining;
      if (left === 0) {
        return stuck("That code didn't work, and that was the last try. Start again for a new key to scan.", true);
      }
      invalid(
        Number.isFinite(left)
          ? `That code didn't work. ${left} ${left === 1 ? "attempt" : "attempts"} left. Check the app's clock too.`
          : "That code didn't work. Check it and try again.",
      );
      code.input.select();
      code.input.focus();
      return;
    }
    if (code_ === "enrolment_expired" || code_ === "no_enrolment") {
      return stuck("This took too long, so the key expired. Start again for a new one.", true);
    }
    if (PAUSES.has(code_)) return pause(error);
    if (code_ === "step_up_in_progress") return say("We're still checking the code you sent. Give it a moment.", "info");
    if (Object.hasOwn(ACCOUNT_PROBLEMS, code_)) return stuck(ACCOUNT_PROBLEMS[code_], false, "error");
    if (code_ === "factor_change_refused") {
      return stuck("Adding an authenticator app isn't allowed for this account.", false, "error");
    }
    const message = code_ === "network_error" ? NETWORK_MESSAGE : errorMessage(error);
    if (phase === "scan") {
      say(message);
      code.input.focus();
    } else {
      stuck(message, true, "error");
    }
  }

  function download() {
    const text = [
      "Singing Telegrams: recovery codes",
      opened.account ? `for ${opened.account}` : "",
      "",
      "Each code works once, instead of a code from your authenticator app.",
      "",
      ...codes,
      "",
    ].join("\n");
    const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
    const link = h("a", { href: url, download: RECOVERY_FILE, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 0);
    copied.textContent = `Saved as ${RECOVERY_FILE}.`;
  }

  async function copy() {
    try {
      await navigator.clipboard.writeText(codes.join("\n"));
      copied.textContent = "Copied.";
    } catch {
      copied.textContent = "Couldn't copy here: select the codes, or download them.";
    }
  }

  function close({ result = false, error = null } = {}) {
    if (!shell.isOpen) return;
    generation += 1;
    stopWait();
    if (started) api.factors.cancelAuthenticator().catch(() => {});
    started = false;
    codes = [];
    codesList.replaceChildren();
    shell.settle({ result, error });
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (phase === "reauth") signInWithPassword();
    else if (phase === "scan") confirm();
  });
  hostedButton.addEventListener("click", () => signInAgain());
  restartButton.addEventListener("click", () => start());
  cancelButton.addEventListener("click", () => close());
  doneButton.addEventListener("click", () => {
    if (doneButton.getAttribute("aria-disabled") === "true") {
      say("Tick “I've stored these codes somewhere safe” first: they aren't shown again.", "info");
      return;
    }
    close({ result: true });
  });
  savedBox.addEventListener("change", () => {
    say("");
    render();
  });
  copyButton.addEventListener("click", copy);
  downloadButton.addEventListener("click", download);
  // Escape must not lose the recovery codes before the person has them.
  dialog.addEventListener("cancel", (event) => {
    if (phase === "codes" && codes.length > 0 && !savedBox.checked) event.preventDefault();
  });

  return {
    /** Walk through adding an authenticator app; resolves true once added, false when the person stops. */
    open(options = {}) {
      if (shell.isOpen) return shell.open();
      opened = options;
      doneButton.textContent = options.then ? "Continue" : "Done";
      // Rendered in its loading state *before* it is shown, so showModal() never lands on a field that is about to
      // be hidden; the heading holds focus until start() moves it on (to the code field, or the password).
      phase = "loading";
      say("");
      render();
      const promise = shell.open();
      heading.focus();
      start();
      return promise;
    },
  };
}

const KIND_WORDS = { authenticator: "authenticator app", email: "email codes", sms: "text-message codes" };

/** "authenticator app “Phone”" */
export function factorLabel(factor) {
  const kind = KIND_WORDS[factor?.method] ?? "way to confirm it's you";
  // A name that only repeats the kind ("Authenticator app") says nothing more.
  const hint = factor?.hint && factor.hint.toLowerCase() !== kind.toLowerCase() ? factor.hint : null;
  return hint ? `${kind} “${hint}”` : kind;
}

/**
 * Removing a factor. `open({ factor, factors })` resolves with the BFF's answer ({ removed, factors }) once removed,
 * or null when the person stops. The step-up the BFF asks for is api.js's business (the step-up dialog, on top).
 */
export function createRemovalDialog({ api }) {
  const prefix = "remove-factor";
  const what = h("p", { class: "dialog-confirms", "data-testid": `${prefix}-what` });
  const loss = h("p", { class: "dialog-intro", "data-testid": `${prefix}-loss` });
  // A code of that factor or a recovery code, which has letters: a keyboard that offers them.
  const code = codeField(prefix, { label: "Code" });
  code.acceptLetters(true);
  const alert = dialogAlert(prefix);
  const cancelButton = h("button", { type: "button", class: "button ghost", "data-testid": `${prefix}-cancel` }, "Cancel");
  const removeButton = h(
    "button",
    { type: "submit", class: "button danger", "data-testid": `${prefix}-submit` },
    "Remove",
  );
  const { dialog, form } = dialogShell(
    prefix,
    "Remove a way to confirm it's you",
    what,
    loss,
    code.row,
    alert.element,
    h("div", { class: "dialog-actions" }, cancelButton, removeButton),
  );
  const shell = modal(dialog, { onDismiss: () => close() });

  let factor = null;
  let busy = false;

  const say = alert.say;
  // A wrong code: said, and tied to the field (aria-invalid, and read with it).
  const invalid = (message) => alert.invalid(code, message);

  function setBusy(value) {
    busy = value;
    removeButton.setAttribute("aria-disabled", String(value));
    removeButton.textContent = value ? "Removing…" : "Remove";
    form.setAttribute("aria-busy", String(value));
  }

  async function submit(event) {
    event.preventDefault();
    if (busy || !factor) return;
    const value = cleanCode(code, invalid);
    if (!value) return;
    say("");
    setBusy(true);
    try {
      const result = await api.factors.remove(factor.id, value);
      setBusy(false);
      close(result);
    } catch (error) {
      setBusy(false);
      const body = error?.body ?? {};
      if (error?.code === "login_required") return close(null, error);
      if (error?.code === "factor_not_found") return close({ removed: [], factors: null });
      if (error?.code === "invalid_code") {
        const left = body.attempts_remaining;
        invalid(
          left === 0
            ? "That code didn't work, and that was the last try. Check the code; trying again will ask you to " +
                "confirm it's you first."
            : `That code didn't work${Number.isFinite(left) ? `: ${left} ${left === 1 ? "attempt" : "attempts"} left` : ""}.`,
        );
      } else if (error?.code === "step_up_cancelled") {
        say("Not removed, because confirming was cancelled.", "warning");
      } else if (PAUSES.has(error?.code)) {
        // Said once, with when; pressing Remove again after that time works.
        say(pausedMessage(error), "warning");
      } else if (Object.hasOwn(ACCOUNT_PROBLEMS, error?.code)) {
        say(ACCOUNT_PROBLEMS[error.code]);
      } else if (error?.code === "factor_change_refused") {
        say("Removing this one isn't allowed for this account.");
      } else {
        say(error?.code === "network_error" ? NETWORK_MESSAGE : errorMessage(error));
      }
      code.input.select();
      code.input.focus();
    }
  }

  function close(result = null, error = null) {
    factor = null;
    shell.settle({ result, error });
  }

  form.addEventListener("submit", submit);
  cancelButton.addEventListener("click", () => close());

  return {
    open({ factor: chosen, factors = [] }) {
      if (shell.isOpen) return shell.open();
      factor = chosen;
      const others = factors.filter((other) => other.id !== chosen.id).length;
      what.textContent = `Remove your ${factorLabel(chosen)}`;
      // What the person loses, before anything is typed.
      loss.textContent =
        others === 0
          ? "This is your only way to confirm it's you. Without one you can't send telegrams until you add one " +
            "again, and your recovery codes stop working."
          : `You'll still have ${others} other ${others === 1 ? "way" : "ways"} to confirm it's you. A recovery ` +
            "code instead of a code from this one removes all of them.";
      code.hint.textContent =
        chosen.method === "authenticator"
          ? "Enter the code this app shows now, or one of your recovery codes."
          : "Enter one of your recovery codes.";
      code.input.value = "";
      code.clearInvalid();
      say("");
      setBusy(false);
      const promise = shell.open();
      code.input.focus();
      return promise;
    },
  };
}
