// The console works without this file; it only moves the focus to what needs attention.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var problems = document.getElementById("form-errors");
  if (problems) {
    var first = document.querySelector("[aria-invalid='true']");
    (first || problems).focus();
  }
});
