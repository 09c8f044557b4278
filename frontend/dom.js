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

/** 45 -> "45 s", 872 -> "14 min 32 s", 3720 -> "1 h 2 min" (for waits people read). */
export function formatWait(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) {
    const rest = s % 60;
    return rest ? `${Math.floor(s / 60)} min ${rest} s` : `${s / 60} min`;
  }
  const minutes = Math.floor((s % 3600) / 60);
  return minutes ? `${Math.floor(s / 3600)} h ${minutes} min` : `${Math.floor(s / 3600)} h`;
}

/** 300 -> "5 minutes", 90 -> "1 minute 30 seconds", 8 -> "8 seconds" (for sentences). */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const unit = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  if (s < 60) return unit(s, "second");
  const minutes = Math.floor(s / 60);
  const rest = s % 60;
  if (minutes < 60) return rest ? `${unit(minutes, "minute")} ${unit(rest, "second")}` : unit(minutes, "minute");
  const hours = Math.floor(minutes / 60);
  return minutes % 60 ? `${unit(hours, "hour")} ${unit(minutes % 60, "minute")}` : unit(hours, "hour");
}

const timeOnly = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const dayAndTime = new Intl.DateTimeFormat(undefined, {
  weekday: "short",
  day: "numeric",
  month: "short",
  hour: "numeric",
  minute: "2-digit",
});
const full = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "long" });

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

/** The same, spelled out in full (tooltips). */
export function formatFull(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : full.format(date);
}

/** Seconds from now until an ISO timestamp (negative when past). */
export function secondsUntil(iso) {
  return (new Date(iso).getTime() - Date.now()) / 1000;
}
