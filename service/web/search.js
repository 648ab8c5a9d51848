// Search in the caller's chapters (POST /api/v1/search): a form and its results, each with its
// chapter, page and snippet, opening the reader at that page with the passage highlighted. The
// home page searches every chapter; the reader, its chapter's book.

import { describe } from "./api.js";
import { el, replace } from "./element.js";

const RESULTS = 20;
// Passages of results shown, by chunk id: the reader highlights one when it opens at its page.
const passages = new Map();
const PASSAGES_KEPT = 200;

/** The text of a passage a result pointed at, if this page showed it. */
export function knownPassage(chunkId) {
  return passages.get(chunkId) ?? null;
}

/** Forget every passage (sign-out: they are the user's text). */
export function forgetPassages() {
  passages.clear();
}

// Words too common to say where a passage answers a query.
const STOP = new Set(
  "the and for are but not you all any can had her was one our out has have his how its may new now old see two way who did get him let say she too use that with this from they what when where which will your into than then them these there their".split(
    " ",
  ),
);

const tokens = (text) =>
  text
    .toLowerCase()
    .split(/[^\p{L}\p{N}]+/u)
    .filter((word) => word.length > 2 && !STOP.has(word));

/**
 * The page of a result's passage to open: among the pages it spans, the one where the query's
 * words stand most often (the earliest of equals), else the page it starts on.
 */
export async function pageOf(api, result, query) {
  if (result.page_end <= result.page_start) return result.page_number;
  const wanted = new Set(tokens(query));
  const base = `/api/v1/books/${encodeURIComponent(result.book_id)}/chapters/${encodeURIComponent(result.chapter_id)}`;
  let best = result.page_number;
  let most = 0;
  for (let page = result.page_start; page <= result.page_end && page < result.page_start + 10; page += 1) {
    try {
      const { body } = await api.getCached(`${base}/pages/${page}/words`);
      const count = body.words.flatMap((word) => tokens(word[4])).filter((word) => wanted.has(word)).length;
      if (count > most) [best, most] = [page, count];
    } catch {
      break;
    }
  }
  return best;
}

export class SearchPanel {
  /**
   * parts: {form, input, results, status}; `scope()` gives the request's scope ({book_id} or {});
   * `onOpen(result)` opens a result.
   */
  constructor(api, parts, { scope, onOpen }) {
    this.api = api;
    this.parts = parts;
    this.scope = scope;
    this.onOpen = onOpen;
    this.runs = 0;
    parts.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.run(parts.input.value);
    });
  }

  clear() {
    this.runs += 1;
    this.parts.input.value = "";
    this.parts.status.textContent = "";
    replace(this.parts.results);
  }

  async run(text) {
    const query = text.trim();
    const run = ++this.runs;
    if (!query) return;
    this.parts.status.textContent = "Searching...";
    replace(this.parts.results);
    let body;
    try {
      ({ body } = await this.api.post("/api/v1/search", {
        json: { query, k: RESULTS, ...this.scope() },
      }));
    } catch (error) {
      if (run === this.runs) this.parts.status.textContent = `Search failed: ${describe(error)}`;
      return;
    }
    if (run !== this.runs) return;
    const results = body.results;
    this.parts.status.textContent = results.length
      ? `${results.length} passage${results.length === 1 ? "" : "s"} for "${query}"`
      : `Nothing found for "${query}" (a chapter is searchable once it is indexed)`;
    replace(
      this.parts.results,
      results.map((result) => {
        passages.set(result.chunk_id, result.content);
        if (passages.size > PASSAGES_KEPT) passages.delete(passages.keys().next().value);
        const open = el(
          "button",
          { type: "button", class: "result", "data-chapter": result.chapter_id, "data-page": result.page_number },
          el("span", { class: "result-where" }, `${result.chapter_title} · page ${result.page_number}`),
          el("span", { class: "result-snippet" }, result.snippet),
        );
        open.addEventListener("click", async () => {
          open.disabled = true;
          result.open_page = await pageOf(this.api, result, query);
          open.disabled = false;
          this.onOpen(result);
        });
        return el("li", {}, open);
      }),
    );
  }
}
