// The console's own script, served as a file (the Content-Security-Policy allows no inline script).
// Copy buttons: <button data-copy="ID"> copies the text of the element ID; an element with data-copied="ID"
// says it was copied (or selects the text for a manual copy when the clipboard is not available).
document.addEventListener("click", function (event) {
  var button = event.target.closest ? event.target.closest("[data-copy]") : null;
  if (!button) return;
  var id = button.getAttribute("data-copy");
  var source = document.getElementById(id);
  if (!source) return;
  var text = source.textContent.trim();
  var said = document.querySelector('[data-copied="' + id + '"]');
  var tell = function (message) { if (said) said.textContent = message; };
  var select = function () {
    var range = document.createRange();
    range.selectNodeContents(source);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    tell("Selected: press Ctrl+C (⌘C) to copy.");
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(function () { tell("Copied."); }, select);
  } else {
    select();
  }
});
