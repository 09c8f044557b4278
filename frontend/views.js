// Rendering. Every view is built with createElement/textContent (see dom.js); nothing here calls the network.
// The signed-in view is built once per sign-in and then updated in place through the controller it returns, so
// what a person is typing survives every update (a list refresh, the badge ticking, an error).

import { formatMoment, formatWhen, h, show } from "./dom.js";
import { factorLabel } from "./factors.js";
import { activitySentence } from "./messages.js";

export const RECIPIENT_MAX = 100;
export const MESSAGE_MAX = 500;

/** "Loading…" in the main area, and nothing in the account slot. */
export function renderLoading(main, account) {
  account.replaceChildren();
  main.replaceChildren(h("p", { class: "loading page-loading", role: "status" }, "Loading…"));
}

/** Something prevented the page from starting at all (the BFF is unreachable, say), with a way to try again. */
export function renderProblem(main, account, { message, onRetry }) {
  account.replaceChildren();
  main.replaceChildren(
    h(
      "section",
      { class: "card hero", "aria-labelledby": "problem-title" },
      h("h1", { id: "problem-title" }, "Singing Telegrams"),
      h("p", { class: "notice error", role: "alert", "data-testid": "page-error" }, message),
      h("button", { type: "button", class: "button primary", onclick: onRetry }, "Try again"),
    ),
  );
}

/**
 * The signed-out page: what this is, what step-up means, and the ways to sign in: our own form when the BFF offers
 * native sign-in (`nativeSignIn` given), and the button to FusionAuth's page always. Returns the form's controller
 * (values(), setBusy(bool), setError(text), afterFailure(), focus()) or null without the form.
 */
export function renderSignedOut(main, account, { notice, onSignIn, nativeSignIn = null }) {
  account.replaceChildren();
  const hosted = h(
    "button",
    {
      type: "button",
      class: nativeSignIn ? "button ghost wide" : "button primary large",
      "data-testid": "sign-in",
      onclick: onSignIn,
    },
    nativeSignIn ? "Use FusionAuth's sign-in page" : "Sign in",
  );
  const form = nativeSignIn ? signInForm(nativeSignIn.onSubmit) : null;
  const explainer = h(
    "p",
    { class: form ? "explainer after-sign-in" : "explainer", "data-testid": "step-up-explainer" },
    "Signing in lets you look around. Sending a telegram matters more, so right before it we ask you to confirm " +
      "it's you with a code, from your authenticator app or sent by email. That's called step-up authentication.",
  );
  main.replaceChildren(
    h(
      "section",
      { class: "card hero", "aria-labelledby": "hero-title", "data-testid": "signed-out" },
      h("span", { class: "hero-art", "aria-hidden": "true" }),
      h("h1", { id: "hero-title" }, "Singing Telegrams"),
      h("p", { class: "lead" }, "Send someone a message they'll hear: a telegram, delivered in song."),
      notice ? h("p", { class: "notice error", role: "alert", "data-testid": "page-error" }, notice) : null,
      form ? null : explainer,
      form ? form.element : null,
      form ? h("p", { class: "divider", "aria-hidden": "true" }, "or") : null,
      hosted,
      // With the form on the page, what step-up means comes after the ways in.
      form ? explainer : null,
    ),
  );
  if (form) form.focus();
  else hosted.focus({ preventScroll: true });
  return form;
}

/** Our own sign-in form. The password goes to the BFF only, which is the one that talks to FusionAuth. */
function signInForm(onSubmit) {
  const loginId = h("input", {
    id: "login-id",
    name: "username",
    type: "text",
    autocomplete: "username",
    autocapitalize: "none",
    spellcheck: "false",
    required: true,
    maxlength: 320,
    "data-testid": "login-id",
  });
  const password = h("input", {
    id: "password",
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
    maxlength: 1024,
    "data-testid": "password",
  });
  // role="alert": a failed sign-in is announced the moment it is shown.
  const error = h("p", { class: "form-error", role: "alert", "data-testid": "sign-in-error" });
  const submit = h(
    "button",
    { type: "submit", class: "button primary large wide", "data-testid": "sign-in-submit" },
    "Sign in",
  );
  const element = h(
    "form",
    { class: "sign-in-form", novalidate: true, "aria-labelledby": "sign-in-title", "data-testid": "sign-in-form" },
    h("h2", { id: "sign-in-title" }, "Sign in"),
    h("div", { class: "field" }, h("label", { for: "login-id" }, "Email or username"), loginId),
    h("div", { class: "field" }, h("label", { for: "password" }, "Password"), password),
    error,
    submit,
  );
  let busy = false;
  element.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!busy) onSubmit();
  });
  const controller = {
    element,
    values: () => ({ loginId: loginId.value.trim(), password: password.value }),
    setBusy(value) {
      busy = value;
      // aria-disabled, not disabled: focus stays on the button while the answer is on its way.
      submit.setAttribute("aria-disabled", String(value));
      submit.textContent = value ? "Signing in…" : "Sign in";
      element.setAttribute("aria-busy", String(value));
    },
    setError(text) {
      error.textContent = text ?? "";
    },
    /** Check the form on the client; returns an error sentence or null, and marks the field. */
    validate() {
      loginId.removeAttribute("aria-invalid");
      password.removeAttribute("aria-invalid");
      if (!loginId.value.trim()) {
        loginId.setAttribute("aria-invalid", "true");
        loginId.focus();
        return "Enter your email address or username.";
      }
      if (!password.value) {
        password.setAttribute("aria-invalid", "true");
        password.focus();
        return "Enter your password.";
      }
      return null;
    },
    /** After a refusal: the password is typed again, the login id stays. */
    afterFailure() {
      password.value = "";
      password.focus();
    },
    focus() {
      (loginId.value ? password : loginId).focus({ preventScroll: true });
    },
  };
  return controller;
}

/**
 * The signed-in page. Returns a controller:
 *   values(), setValues({ recipient, message }), clearForm(), setBusy(bool), setFormError(text),
 *   setFormStatus(text), focusFirstInvalid(), setTelegrams(list), prependTelegram(telegram),
 *   setTelegramsError(text, onRetry), setBadge(text | null), setNotice(text | null), setSigningOut(bool),
 *   setActivity(events, options), setActivityError(text), setSessions(sessions), setSessionsError(text),
 *   setSessionsBusy(bool), setFactors(list), setFactorsError(text, onRetry), setSecurityStatus(text),
 *   focusGreeting()
 * `onAddFactor()` and `onRemoveFactor(factor, factors)` are the Security panel's buttons.
 */
export function renderSignedIn(
  main,
  account,
  {
    session,
    notice,
    onSubmit,
    onSignOut,
    onEndSession = () => {},
    onSignOutEverywhere = () => {},
    onAddFactor,
    onRemoveFactor,
  },
) {
  const user = session.user ?? {};
  const displayName = user.name || user.email || "there";

  // ---- account slot in the header ------------------------------------------------------------------------------
  const signOut = h(
    "button",
    { type: "button", class: "button ghost small", "data-testid": "sign-out", onclick: onSignOut },
    "Sign out",
  );
  account.replaceChildren(
    h("span", { class: "account-name", "data-testid": "account-name" }, user.email || user.name || ""),
    signOut,
  );

  // ---- greeting ------------------------------------------------------------------------------------------------
  // tabindex=-1: where focus goes when the view replaces what had it (the sign-in button), never <body>.
  const greeting = h("h1", { "data-testid": "greeting", tabindex: "-1" }, `Hello, ${displayName}`);
  // What it means is in its words ("No code needed for 4:12"), not in a hover-only title.
  const badge = h("span", { class: "badge elevated", "data-testid": "elevated-badge", hidden: true });
  const sessionLine = h("p", { class: "muted session-line" });
  if (user.email) sessionLine.append(h("span", { "data-testid": "user-email" }, user.email), " · ");
  if (session.expires_at) {
    sessionLine.append(
      "Your session ends ",
      h(
        "time",
        { datetime: session.expires_at, "data-testid": "session-ends" },
        formatWhen(session.expires_at),
      ),
      ".",
    );
  }
  const noticeBox = h("p", { class: "notice error", role: "alert", "data-testid": "page-error", hidden: true });

  // ---- the compose form ----------------------------------------------------------------------------------------
  const recipient = h("input", {
    id: "recipient",
    name: "recipient",
    type: "text",
    maxlength: RECIPIENT_MAX,
    autocomplete: "off",
    required: true,
    placeholder: "Who is it for?",
    "data-testid": "recipient",
  });
  const message = h("textarea", {
    id: "message",
    name: "message",
    rows: 5,
    maxlength: MESSAGE_MAX,
    required: true,
    placeholder: "Happy birthday to you…",
    "aria-describedby": "message-count",
    "data-testid": "message",
  });
  const counter = h("p", { id: "message-count", class: "counter", "data-testid": "message-count" });
  const updateCounter = () => {
    const used = message.value.length;
    counter.textContent = `${used} / ${MESSAGE_MAX} characters`;
    counter.classList.toggle("near-limit", used > MESSAGE_MAX - 50);
  };
  message.addEventListener("input", updateCounter);
  updateCounter();

  const formError = h("p", { class: "form-error", role: "alert", "data-testid": "form-error" });
  const formStatus = h("p", { class: "form-status", role: "status", "data-testid": "form-status" });
  const sendButton = h(
    "button",
    { type: "submit", class: "button primary", "data-testid": "send-telegram" },
    "Send telegram",
  );
  const form = h(
    "form",
    { class: "compose-form", novalidate: true, "data-testid": "telegram-form", "aria-labelledby": "compose-title" },
    h("div", { class: "field" }, h("label", { for: "recipient" }, "To"), recipient),
    h("div", { class: "field" }, h("label", { for: "message" }, "Message"), message, counter),
    formError,
    h(
      "div",
      { class: "form-actions" },
      sendButton,
      h("span", { class: "muted small-print" }, "We may ask you to confirm it's you first."),
    ),
    formStatus,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    onSubmit();
  });

  // ---- the list ------------------------------------------------------------------------------------------------
  const list = h("ol", { class: "telegrams", "data-testid": "telegram-list", "aria-labelledby": "sent-title" });
  const empty = h(
    "p",
    { class: "empty muted", "data-testid": "telegrams-empty", hidden: true },
    "No telegrams yet. Your first one is just a form away.",
  );
  const listStatus = h(
    "p",
    { class: "loading muted", role: "status", "data-testid": "telegrams-loading" },
    "Loading your telegrams…",
  );
  const listError = h("div", { class: "notice error", role: "alert", hidden: true });

  // ---- the activity log ----------------------------------------------------------------------------------------
  const activityList = h("ol", {
    class: "activity-list",
    "data-testid": "activity-list",
    "aria-labelledby": "activity-title",
  });
  const activityStatus = h(
    "p",
    { class: "loading muted", role: "status", "data-testid": "activity-loading" },
    "Loading your account's activity…",
  );
  const activityError = h("div", { class: "notice error", role: "alert", hidden: true, "data-testid": "activity-error" });
  const activityMore = h(
    "button",
    { type: "button", class: "button secondary small activity-more", "data-testid": "activity-more", hidden: true },
    "Show older activity",
  );
  let loadMore = null;
  activityMore.addEventListener("click", () => loadMore?.());

  // ---- the active sessions -------------------------------------------------------------------------------------
  const sessionList = h("ul", {
    class: "session-list",
    "data-testid": "session-list",
    "aria-labelledby": "sessions-title",
  });
  const sessionsStatus = h(
    "p",
    { class: "loading muted", role: "status", "data-testid": "sessions-loading" },
    "Loading your sessions…",
  );
  const sessionsError = h("div", { class: "notice error", role: "alert", hidden: true, "data-testid": "sessions-error" });
  const everywhere = h(
    "button",
    { type: "button", class: "button secondary small", "data-testid": "sign-out-everywhere" },
    "Sign out everywhere",
  );
  everywhere.addEventListener("click", () => {
    if (everywhere.getAttribute("aria-disabled") !== "true") onSignOutEverywhere();
  });
  // ---- security: the person's second factors -------------------------------------------------------------------
  const factorList = h("ul", { class: "factor-list", "data-testid": "factor-list", "aria-labelledby": "security-title" });
  const factorsStatus = h(
    "p",
    { class: "loading muted", role: "status", "data-testid": "factors-loading" },
    "Loading your ways to confirm it's you…",
  );
  const factorsEmpty = h(
    "p",
    { class: "empty muted", "data-testid": "factors-empty", hidden: true },
    "No way to confirm it's you yet. Add an authenticator app, so that you can confirm it's you when it matters, " +
      "such as before sending a telegram.",
  );
  const factorsError = h("div", { class: "notice error", role: "alert", hidden: true, "data-testid": "factors-error" });
  const securityStatus = h("p", { class: "form-status", role: "status", "data-testid": "security-status" });
  const addFactor = h(
    "button",
    { type: "button", class: "button secondary", "data-testid": "add-factor", onclick: () => onAddFactor?.() },
    "Add an authenticator app",
  );

  main.replaceChildren(
    h(
      "section",
      { class: "welcome", "data-testid": "signed-in" },
      h(
        "div",
        { class: "welcome-text" },
        greeting,
        sessionLine,
      ),
      badge,
    ),
    noticeBox,
    h(
      "div",
      { class: "columns" },
      h(
        "section",
        { class: "card compose", "aria-labelledby": "compose-title" },
        h("h2", { id: "compose-title" }, "Send a singing telegram"),
        form,
      ),
      h(
        "section",
        { class: "card sent", "aria-labelledby": "sent-title" },
        h("h2", { id: "sent-title" }, "Sent telegrams"),
        listStatus,
        listError,
        empty,
        list,
      ),
    ),
    h(
      "section",
      { class: "card sessions", "aria-labelledby": "sessions-title", "data-testid": "sessions" },
      h("h2", { id: "sessions-title" }, "Active sessions"),
      h(
        "p",
        { class: "muted small-print" },
        "Everywhere you're signed in. A device you don't recognise? Sign it out, or sign out everywhere and change " +
          "your password.",
      ),
      sessionsStatus,
      sessionsError,
      sessionList,
      h("div", { class: "form-actions" }, everywhere),
    ),
    h(
      "section",
      { class: "card security", "aria-labelledby": "security-title", "data-testid": "security" },
      h("h2", { id: "security-title" }, "Security"),
      h(
        "p",
        { class: "muted small-print" },
        "The ways you confirm it's you before something that matters, such as sending a telegram. Adding one asks " +
          "you to sign in again; removing one asks you to confirm it's you.",
      ),
      factorsStatus,
      factorsError,
      factorsEmpty,
      factorList,
      h("div", { class: "form-actions" }, addFactor),
      securityStatus,
    ),
    h(
      "section",
      { class: "card activity", "aria-labelledby": "activity-title", "data-testid": "activity" },
      h("h2", { id: "activity-title" }, "Activity"),
      h(
        "p",
        { class: "muted small-print" },
        "Sign-ins, confirmations and telegrams sent from your account, newest first. Something you don't " +
          "recognise? Sign out and change your password.",
      ),
      activityStatus,
      activityError,
      activityList,
      activityMore,
    ),
  );

  let busy = false;
  let statusTimer = 0;

  const controller = {
    form,
    sendButton,
    /** Focus the greeting (and so bring the top of the page into view). */
    focusGreeting() {
      greeting.focus();
    },
    values: () => ({ recipient: recipient.value.trim(), message: message.value.trim() }),
    /** Put a telegram back in the form (coming back from FusionAuth's page in the middle of sending it). */
    setValues({ recipient: to = "", message: text = "" }) {
      recipient.value = to;
      message.value = text;
      updateCounter();
    },
    clearForm() {
      form.reset();
      updateCounter();
    },
    /** Busy, but the button stays focusable (aria-disabled, not disabled): the dialog gives focus back to it. */
    setBusy(value) {
      busy = value;
      sendButton.setAttribute("aria-disabled", String(value));
      sendButton.textContent = value ? "Sending…" : "Send telegram";
      form.setAttribute("aria-busy", String(value));
    },
    get busy() {
      return busy;
    },
    setFormError(text) {
      formError.textContent = text ?? "";
      if (text) controller.setFormStatus(null);
    },
    setFormStatus(text) {
      clearTimeout(statusTimer);
      formStatus.textContent = text ?? "";
      // A confirmation is news for a moment, not forever.
      if (text) statusTimer = setTimeout(() => (formStatus.textContent = ""), 10_000);
    },
    /** Check the form on the client; returns an error sentence or null, and marks the field. */
    validate() {
      const { recipient: to, message: text } = controller.values();
      recipient.removeAttribute("aria-invalid");
      message.removeAttribute("aria-invalid");
      if (!to) {
        recipient.setAttribute("aria-invalid", "true");
        recipient.focus();
        return "Enter who the telegram is for.";
      }
      if (!text) {
        message.setAttribute("aria-invalid", "true");
        message.focus();
        return "Write a message to sing.";
      }
      return null;
    },
    setTelegrams(telegrams) {
      show(listStatus, false);
      show(listError, false);
      list.replaceChildren(...telegrams.map(telegramItem));
      show(empty, telegrams.length === 0);
    },
    prependTelegram(telegram) {
      show(listStatus, false);
      show(empty, false);
      // An idempotent replay returns a telegram we may already show: never list it twice.
      for (const item of list.children) if (item.dataset.id === String(telegram.id)) item.remove();
      const item = telegramItem(telegram);
      item.classList.add("fresh");
      list.prepend(item);
    },
    setTelegramsError(text, onRetry) {
      show(listStatus, false);
      listError.replaceChildren(
        h("span", {}, text),
        " ",
        h("button", { type: "button", class: "button link", onclick: onRetry }, "Try again"),
      );
      show(listError, true);
    },
    /** The activity log's first page (`append` false) or a further one; `onMore` loads the next, if there is one. */
    setActivity(events, { append = false, onMore = null } = {}) {
      show(activityStatus, false);
      show(activityError, false);
      const items = events.map(activityItem);
      if (append) activityList.append(...items);
      else activityList.replaceChildren(...items);
      loadMore = onMore;
      show(activityMore, Boolean(onMore));
    },
    setActivityError(text) {
      show(activityStatus, false);
      activityError.textContent = text;
      show(activityError, true);
    },
    /** The person's sessions, this one first; each row has its own "Sign out". */
    setSessions(sessions) {
      show(sessionsStatus, false);
      show(sessionsError, false);
      sessionList.replaceChildren(...sessions.map((item) => sessionItem(item, onEndSession)));
    },
    setSessionsError(text) {
      show(sessionsStatus, false);
      sessionsError.textContent = text;
      show(sessionsError, true);
    },
    setSessionsBusy(value) {
      everywhere.setAttribute("aria-disabled", String(value));
      everywhere.textContent = value ? "Signing out everywhere…" : "Sign out everywhere";
      for (const button of sessionList.querySelectorAll("button")) button.setAttribute("aria-disabled", String(value));
    },
    setFactors(factors) {
      show(factorsStatus, false);
      show(factorsError, false);
      factorList.replaceChildren(...factors.map((factor) => factorItem(factor, factors, onRemoveFactor)));
      show(factorsEmpty, factors.length === 0);
    },
    setFactorsError(text, onRetry) {
      show(factorsStatus, false);
      factorsError.replaceChildren(
        h("span", {}, text),
        " ",
        h("button", { type: "button", class: "button link", onclick: onRetry }, "Try again"),
      );
      show(factorsError, true);
    },
    setSecurityStatus(text) {
      securityStatus.textContent = text ?? "";
    },
    setBadge(text) {
      badge.textContent = text ?? "";
      show(badge, Boolean(text));
    },
    setNotice(text) {
      noticeBox.textContent = text ?? "";
      show(noticeBox, Boolean(text));
    },
    setSigningOut(value) {
      signOut.setAttribute("aria-disabled", String(value));
      signOut.textContent = value ? "Signing out…" : "Sign out";
    },
    get signingOut() {
      return signOut.getAttribute("aria-disabled") === "true";
    },
  };
  controller.setNotice(notice);
  return controller;
}

function factorItem(factor, factors, onRemove) {
  const label = factorLabel(factor);
  return h(
    "li",
    { class: "factor", "data-testid": "factor", "data-id": String(factor.id), "data-method": String(factor.method) },
    h(
      "span",
      { class: "factor-text" },
      h("span", { class: "factor-name" }, label.charAt(0).toUpperCase() + label.slice(1)),
      factor.last_used ? h("span", { class: "method-tag" }, "last used") : null,
    ),
    h(
      "button",
      {
        type: "button",
        class: "button ghost small",
        "aria-label": `Remove your ${label}`,
        "data-testid": "remove-factor",
        onclick: () => onRemove?.(factor, factors),
      },
      "Remove",
    ),
  );
}

function activityItem(event) {
  const when = String(event.at ?? "");
  return h(
    "li",
    {
      class: "activity-item",
      "data-testid": "activity-item",
      "data-kind": String(event.kind ?? ""),
      "data-outcome": String(event.outcome ?? ""),
    },
    h(
      "span",
      { class: "activity-what", "data-testid": "activity-what" },
      `${activitySentence(event)}, `,
      h("time", { datetime: when }, formatMoment(when)),
    ),
    // Said in words, not in a hover-only title.
    event.address ? h("span", { class: "muted small-print" }, `Address ${event.address}`) : null,
  );
}

function sessionItem(session, onEnd) {
  const created = String(session.created_at ?? "");
  const seen = String(session.last_seen_at ?? "");
  const agent = typeof session.agent === "string" && session.agent ? session.agent : "An unknown browser";
  const end = h(
    "button",
    {
      type: "button",
      class: "button ghost small",
      "data-testid": "end-session",
      "aria-label": session.current ? "Sign out of this session" : `Sign out ${agent}`,
    },
    "Sign out",
  );
  end.addEventListener("click", () => {
    if (end.getAttribute("aria-disabled") !== "true") onEnd(String(session.id ?? ""), Boolean(session.current));
  });
  return h(
    "li",
    { class: "session-item", "data-testid": "session-item", "data-current": String(Boolean(session.current)) },
    h(
      "div",
      { class: "session-what" },
      h("span", { class: "session-agent", "data-testid": "session-agent" }, agent),
      session.current ? h("span", { class: "badge this-device", "data-testid": "this-session" }, "This session") : null,
      h(
        "span",
        { class: "muted small-print session-when" },
        "Signed in ",
        // The moments in words, not in hover-only titles that touch and keyboard users never see.
        h("time", { datetime: created }, formatMoment(created)),
        ", last active ",
        h("time", { datetime: seen }, formatMoment(seen)),
        session.address ? ` · ${session.address}` : "",
      ),
    ),
    end,
  );
}

function telegramItem(telegram) {
  const status = String(telegram.status ?? "queued");
  const created = typeof telegram.created_at === "number" ? new Date(telegram.created_at * 1000) : telegram.created_at;
  const iso = created instanceof Date ? created.toISOString() : String(created ?? "");
  return h(
    "li",
    { class: "telegram", "data-testid": "telegram", "data-id": telegram.id },
    h(
      "div",
      { class: "telegram-head" },
      h("span", { class: "telegram-recipient", "data-testid": "telegram-recipient" }, telegram.recipient),
      h(
        "span",
        { class: `status status-${status.replace(/[^a-z_-]/gi, "")}`, "data-testid": "telegram-status" },
        status.charAt(0).toUpperCase() + status.slice(1),
      ),
    ),
    h("p", { class: "telegram-message", "data-testid": "telegram-message" }, telegram.message),
    iso ? h("time", { class: "telegram-time muted", datetime: iso }, `Sent ${formatWhen(iso)}`) : null,
  );
}
