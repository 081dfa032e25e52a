// flux-inputs console: a page that follows something running (a rollout) reloads itself every
// <body data-follow="seconds"> seconds. Served from the console's own origin, so the
// Content-Security-Policy stays `script-src 'self'`: no inline script, no eval.
const seconds = Number(document.body.dataset.follow);
if (seconds > 0) {
  setTimeout(() => window.location.reload(), seconds * 1000);
}
