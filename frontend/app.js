// Placeholder until the single-page app lands: shows who is signed in.
const main = document.getElementById("app");
const response = await fetch("/api/session", { credentials: "same-origin" });
const session = await response.json();
const line = document.createElement("p");
line.textContent = session.authenticated ? `Signed in as ${session.user.name}` : "Signed out";
main.replaceChildren(main.firstElementChild, line);
