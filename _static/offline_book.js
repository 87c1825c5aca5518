// The book's own script (html_js_files in _config.yml).
// Opened from disk (the offline site zip, file://), the browser refuses fetch() of other pages,
// and Sphinx's search fetches each result's page to show a summary under its title: the search
// then throws "Failed to fetch" for every result. Leave the summaries out there; titles remain.
// (DOCUMENTATION_OPTIONS is a top-level const of documentation_options.js, not a window property.)
if (window.location.protocol === "file:" && typeof DOCUMENTATION_OPTIONS !== "undefined") {
  DOCUMENTATION_OPTIONS.SHOW_SEARCH_SUMMARY = false;
}
