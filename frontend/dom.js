// Small DOM and time helpers shared by the views and the dialog.
//
// The page runs under a strict CSP (no inline script or style), and every piece of data is rendered as text:
// `h()` builds elements with createElement/textContent only, never innerHTML.

/**
 * Create an element: h("button", { type: "button", class: "primary", onclick: fn }, "Send").
 * - `class` sets className, `text` sets textContent;
 * - `on<event>` with a function value adds an event listener (never an inline handler attribute);
 * - `true` sets a boolean attribute, `false`/`null`/`undefined` leaves it out;
 * - children may be strings, nodes, arrays or null.
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === false || value === null || value === undefined) continue;
    if (key === "class") {
      element.className = value;
    } else if (key === "text") {
      element.textContent = value;
    } else if (key.startsWith("on") && typeof value === "function") {
      element.addEventListener(key.slice(2), value);
    } else if (key === "style" || key.startsWith("on")) {
      // Inline styles and handler attributes would be blocked by the CSP anyway; fail loudly in development.
      throw new Error(`h(): refusing attribute ${key}`);
    } else {
      element.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/**
 * A modal <dialog>'s life. `open()` puts it in the document, shows it (focus trap, Escape, an inert page: the
 * browser's) and returns a promise; `settle({ result, error })` closes it, takes it out, puts focus back where it was
 * and settles that promise (false if nothing was open). A close the dialog makes by itself (Escape) calls
 * `onDismiss()`; its own "close" event after a settle() comes later, as a task, and is ignored.
 */
export function modal(dialog, { onDismiss }) {
  let pending = null;
  let trigger = null;
  let closedByUs = false;
  dialog.addEventListener("close", () => {
    if (closedByUs) {
      closedByUs = false;
      return;
    }
    onDismiss();
  });
  return {
    get isOpen() {
      return pending !== null;
    },
    open() {
      if (pending) return pending.promise;
      trigger = document.activeElement instanceof HTMLElement ? document.activeElement : null;
      let resolve;
      let reject;
      const promise = new Promise((res, rej) => {
        resolve = res;
        reject = rej;
      });
      pending = { resolve, reject, promise };
      document.body.append(dialog);
      dialog.showModal();
      return promise;
    },
    settle({ result = null, error = null } = {}) {
      if (!pending) return false;
      const { resolve, reject } = pending;
      pending = null;
      if (dialog.open) {
        closedByUs = true;
        dialog.close();
      }
      dialog.remove();
      if (trigger?.isConnected && document.activeElement !== trigger) trigger.focus();
      trigger = null;
      if (error) reject(error);
      else resolve(result);
      return true;
    },
  };
}

/** Show or hide an element with the `hidden` attribute (styles.css makes `[hidden]` win over any class). */
export function show(element, visible) {
  element.hidden = !visible;
}

/**
 * A dialog's alert (`${prefix}-error`): problems are announced once each (role="alert"); `tone` ("error", "warning",
 * "info") only changes its colour. Returns { element, say(message, tone), invalid(field, message) }: `invalid` says
 * it and ties it to a codeField (below), whose own error it is.
 */
export function dialogAlert(prefix) {
  const element = h("p", { id: `${prefix}-error`, class: "dialog-alert", role: "alert", "data-testid": `${prefix}-error` });
  function say(message, tone = "error") {
    element.textContent = message;
    element.dataset.tone = tone;
  }
  return {
    element,
    say,
    invalid(field, message) {
      say(message);
      field.markInvalid(element.id);
    },
  };
}

/**
 * The field a code is typed into (the step-up and sign-in dialog, adding and removing a factor): a label, a hint read
 * with the field, and the input, ids from `prefix` (`${prefix}-code`, `${prefix}-code-hint`). Returns
 * { row, input, label, hint, acceptLetters(bool), markInvalid(errorId), clearInvalid() }.
 * - Digits by default (a numeric keyboard, the one-time code the phone offers); `acceptLetters(true)` for a recovery
 *   code, which has letters and a hyphen, with a keyboard that offers them.
 * - An error about the code is the field's own (WCAG 3.3.1): `markInvalid(errorId)` sets aria-invalid and adds the
 *   error's element to the field's description; typing again clears both.
 */
export function codeField(prefix, { label, hint = "" }) {
  const inputId = `${prefix}-code`;
  const hintId = `${prefix}-code-hint`;
  const input = h("input", {
    id: inputId,
    name: "code",
    type: "text",
    class: "code-input",
    spellcheck: "false",
    "aria-describedby": hintId,
    "data-testid": inputId,
  });
  const labelElement = h("label", { for: inputId }, label);
  const hintElement = h("p", { id: hintId, class: "field-hint" }, hint);
  const row = h("div", { class: "field code-row" }, labelElement, hintElement, input);

  function clearInvalid() {
    input.removeAttribute("aria-invalid");
    input.setAttribute("aria-describedby", hintId);
  }

  function acceptLetters(letters) {
    input.classList.toggle("recovery", letters);
    input.setAttribute("inputmode", letters ? "text" : "numeric");
    input.setAttribute("autocomplete", letters ? "off" : "one-time-code");
    input.setAttribute("autocapitalize", letters ? "characters" : "off");
    input.setAttribute("maxlength", letters ? "64" : "10");
    if (letters) input.removeAttribute("pattern");
    else input.setAttribute("pattern", "[0-9]*");
  }

  input.addEventListener("input", () => {
    if (input.hasAttribute("aria-invalid")) clearInvalid();
  });
  acceptLetters(false);
  return {
    row,
    input,
    label: labelElement,
    hint: hintElement,
    acceptLetters,
    markInvalid(errorId) {
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", `${hintId} ${errorId}`);
    },
    clearInvalid,
  };
}

/**
 * Call `onTick(secondsLeft)` now and every second until the deadline, then `onDone()`.
 * Counts against a fixed deadline (not by decrementing), so a busy or throttled tab never drifts.
 * Returns a function that stops the countdown.
 */
export function countdown(seconds, onTick, onDone) {
  const deadline = Date.now() + seconds * 1000;
  let timer = 0;
  const tick = () => {
    const left = Math.ceil((deadline - Date.now()) / 1000);
    if (left <= 0) {
      onDone?.();
      return;
    }
    onTick(left);
    // Wake up just after the next whole second boundary of the remaining time.
    timer = setTimeout(tick, ((deadline - Date.now()) % 1000) + 20);
  };
  tick();
  return () => clearTimeout(timer);
}

/** 75 -> "1:15" (for the elevated badge). */
export function formatClock(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/** 45 -> "45 s", 872 -> "14 min 32 s", 3720 -> "1 h 2 min", 2_592_000 -> "30 days" (for waits people read). */
export function formatWait(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) {
    const rest = s % 60;
    return rest ? `${Math.floor(s / 60)} min ${rest} s` : `${s / 60} min`;
  }
  if (s < 86_400) {
    const minutes = Math.floor((s % 3600) / 60);
    return minutes ? `${Math.floor(s / 3600)} h ${minutes} min` : `${Math.floor(s / 3600)} h`;
  }
  // An administrator's lock may last weeks: days (and hours), not "720 h".
  const days = Math.floor(s / 86_400);
  const hours = Math.floor((s % 86_400) / 3600);
  const dayWords = `${days} ${days === 1 ? "day" : "days"}`;
  return hours ? `${dayWords} ${hours} h` : dayWords;
}

/** 300 -> "5 minutes", 90 -> "1 minute 30 seconds", 8 -> "8 seconds", 90_000 -> "1 day 1 hour" (for sentences). */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const unit = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  if (s < 60) return unit(s, "second");
  const minutes = Math.floor(s / 60);
  const rest = s % 60;
  if (minutes < 60) return rest ? `${unit(minutes, "minute")} ${unit(rest, "second")}` : unit(minutes, "minute");
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return minutes % 60 ? `${unit(hours, "hour")} ${unit(minutes % 60, "minute")}` : unit(hours, "hour");
  const days = Math.floor(hours / 24);
  return hours % 24 ? `${unit(days, "day")} ${unit(hours % 24, "hour")}` : unit(days, "day");
}

const timeOnly = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const dayAndTime = new Intl.DateTimeFormat(undefined, {
  weekday: "short",
  day: "numeric",
  month: "short",
  hour: "numeric",
  minute: "2-digit",
});

function dayOffset(date) {
  const start = (d) => new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
  return Math.round((start(date) - start(new Date())) / 86_400_000);
}

/** An ISO timestamp as local time people read: "today at 10:04", "tomorrow at 09:30", "Sat 21 Nov, 18:00". */
export function formatWhen(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const offset = dayOffset(date);
  if (offset === 0) return `today at ${timeOnly.format(date)}`;
  if (offset === 1) return `tomorrow at ${timeOnly.format(date)}`;
  if (offset === -1) return `yesterday at ${timeOnly.format(date)}`;
  return dayAndTime.format(date);
}

/** A moment in a log: "10:42" today, "yesterday 18:05", else "Sat 21 Nov, 18:00". */
export function formatMoment(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const offset = dayOffset(date);
  if (offset === 0) return timeOnly.format(date);
  if (offset === -1) return `yesterday ${timeOnly.format(date)}`;
  return dayAndTime.format(date);
}

/** When a wait ends, for a sentence: "at 10:42" today, "tomorrow at 09:30", else "on Sat 21 Nov, 18:00". */
export function formatAt(date) {
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) return "in a moment";
  const offset = dayOffset(date);
  if (offset === 0) return `at ${timeOnly.format(date)}`;
  if (offset === 1) return `tomorrow at ${timeOnly.format(date)}`;
  return `on ${dayAndTime.format(date)}`;
}

/**
 * When an answer's wait ends, on this browser's clock: when it arrived plus its `retry_after` (seconds), else its
 * `locked_until` (FusionAuth's lock, an absolute time on the server's clock); null when it says neither. The relative
 * wait comes first because the browser's clock may be minutes off the server's: `locked_until` read against it would
 * re-enable the dialog too early (a fast clock) or too late (a slow one), while "180 s from when the answer came" is
 * right on any clock. A Date already fixed on the error (`until`, see waitOut) wins, so a sentence written later still
 * names the same moment.
 */
export function waitEnd(error) {
  if (error?.until instanceof Date) return error.until;
  const body = error?.body ?? {};
  if (Number.isFinite(body.retry_after)) {
    const arrived = Number.isFinite(error?.receivedAt) ? error.receivedAt : Date.now();
    return new Date(arrived + body.retry_after * 1000);
  }
  const until = typeof body.locked_until === "string" ? new Date(body.locked_until) : null;
  return until && !Number.isNaN(until.getTime()) ? until : null;
}

/**
 * Wait out a pause with an end (the dialogs' `PAUSES`): fix its end on the error (`error.until`: a minute when the
 * answer said nothing), so every sentence written about it from now on, the page's after Close included, names the
 * same moment; then count down to it (`countdown`'s onTick and onDone, at least a second). Returns the stop function.
 */
export function waitOut(error, onTick, onDone) {
  const until = waitEnd(error) ?? new Date(Date.now() + 60_000);
  error.until = until;
  return countdown(Math.max(1, (until.getTime() - Date.now()) / 1000), onTick, onDone);
}

/** Seconds from now until an ISO timestamp (negative when past). */
export function secondsUntil(iso) {
  return (new Date(iso).getTime() - Date.now()) / 1000;
}
