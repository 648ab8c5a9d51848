// The reader: one chapter, one page at a time, over the whole window, at its own URL
// (/books/{book_id}/chapters/{chapter_id}#page=N, so a reload reopens the same page).
//
//   toolbar   back, sidebar, previous / "page N of M" / next, zoom (fit width, fit page,
//             50-400 %), find in the chapter, full screen
//   sidebar   Pages (a virtualised thumbnail rail), Outline (the PDF's, clickable),
//             Search (the book, through POST /api/v1/search), About (the chapter; delete it)
//   the page  its image, a selectable text layer of its positioned words, find hits and a
//             search passage highlighted, its links clickable (internal: a page; external: a tab)
//
// Keys: Right/Left, PageDown/PageUp, Space (next/previous page, scrolling a zoomed page first),
// Home/End, + and - (zoom), Ctrl+F or / (find; Enter, Shift+Enter, Esc), S (sidebar), F (full
// screen), G (go to a page). Everything is a button or a field: the keyboard alone reads.

import { ApiError, describe } from "./api.js";
import { el, replace, setText } from "./element.js";
import { findInWords, highlights, linkLayer, passageBoxes, textLayer } from "./layers.js";
import { PageIndex, normalise } from "./pages.js";
import { Rail } from "./rail.js";
import { SearchPanel, knownPassage } from "./search.js";

const $ = (id) => document.getElementById(id);
// Zoom steps, as a share of the page's printed size (100 % = its size on paper).
const STEPS = [0.25, 0.33, 0.5, 0.67, 0.75, 0.8, 0.9, 1, 1.1, 1.25, 1.5, 1.75, 2, 2.5, 3, 4];
const PRESETS = ["width", "page", "0.5", "0.75", "1", "1.25", "1.5", "2", "3", "4"];
const ZOOM_KEY = "pcj.prefs.zoom"; // not the user's data: kept across sign-outs
const NARROW = "(max-width: 48rem)";
const PAD = 12; // px around the page in the view
const CSS_DPI = 96;

/** The reader's URL for a chapter, at a page. */
export function readerPath(bookId, chapterId, page = null) {
  const path = `/books/${encodeURIComponent(bookId)}/chapters/${encodeURIComponent(chapterId)}`;
  return page ? `${path}#page=${page}` : path;
}

/** The chapter a reader URL names, or null: {bookId, chapterId}. */
export function readerRoute(pathname) {
  const match = /^\/books\/([^/]+)\/chapters\/([^/]+)\/?$/.exec(pathname);
  if (!match) return null;
  try {
    return { bookId: decodeURIComponent(match[1]), chapterId: decodeURIComponent(match[2]) };
  } catch {
    return null;
  }
}

/** What the hash asks for: {page, passage} (passage: a search result's chunk id). */
export function hashState(hash) {
  const params = new URLSearchParams(hash.replace(/^#/, ""));
  const page = Number.parseInt(params.get("page") ?? "", 10);
  return { page: Number.isFinite(page) ? page : null, passage: params.get("passage") };
}

function clamp(value, low, high) {
  return Math.min(high, Math.max(low, value));
}

/** Stats of what the reader did, for people and tests (window.pcj.reader). */
export const readerStats = {
  opened: 0,
  firstPageDrawnMs: null, // since navigation start: the first page's image decoded and shown
  pagesShown: 0,
};

export class Reader {
  /**
   * handlers: close() (back to the library), deleted(chapter), error(message), open(result)
   * (a search result in another chapter); options: {pageDpi}.
   */
  constructor(api, handlers, { pageDpi = 150 } = {}) {
    this.api = api;
    this.handlers = handlers;
    this.pageDpi = pageDpi;
    this.root = $("reader");
    this.view = $("r-view");
    this.sheet = $("r-sheet");
    this.image = $("r-image");
    this.layer = $("r-layer");
    this.chapter = null;
    this.index = null;
    this.rail = null;
    this.current = 1;
    this.renders = 0;
    this.opens = 0;
    this.finds = 0;
    this.zoom = this.savedZoom();
    this.find = { query: "", hits: [], at: -1 };
    this.passage = null; // {page, text}
    this.drawn = null; // {number, entry, words}
    this.search = new SearchPanel(
      api,
      {
        form: $("r-search-form"),
        input: $("r-search-input"),
        results: $("r-search-results"),
        status: $("r-search-status"),
      },
      { scope: () => ({ book_id: this.chapter?.book_id }), onOpen: (result) => this.openResult(result) },
    );
    this.wire();
  }

  // ---- opening and closing ----------------------------------------------------------------

  /** Open a chapter at `page` (default 1), with a search passage to highlight (a chunk id). */
  async open(bookId, chapterId, { page = null, passage = null } = {}) {
    const base = `/api/v1/books/${encodeURIComponent(bookId)}/chapters/${encodeURIComponent(chapterId)}`;
    if (this.chapter?.chapter_id === chapterId && this.chapter.book_id === bookId) {
      this.show(true);
      await this.highlightPassage(passage, page);
      const same = (page ?? this.current) === this.current;
      this.goTo(page ?? this.current);
      if (same) this.drawLayers();
      return;
    }
    this.reset();
    const open = this.opens; // reset() began a new opening: a later one drops this one
    this.show(true);
    setText("r-title", "Loading...");
    let chapter;
    try {
      ({ body: chapter } = await this.api.get(`${base}?pages=false`));
    } catch (error) {
      if (open !== this.opens) return;
      const gone = error instanceof ApiError && error.status === 404;
      setText("r-title", gone ? "Chapter not found" : "Could not open the chapter");
      this.handlers.error(
        gone
          ? "This chapter does not exist (any more): it was deleted, or it is not yours."
          : `Could not open the chapter: ${describe(error)}`,
      );
      return;
    }
    if (open !== this.opens) return;
    readerStats.opened += 1;
    this.base = base;
    this.chapter = chapter;
    this.index = new PageIndex(this.api, base, chapter.total_pages);
    this.index.load(0); // the first window, while the rest is laid out
    document.title = `${chapter.title} · PDF chapters`;
    setText("r-title", chapter.title);
    setText("r-count", String(chapter.total_pages));
    $("r-page").max = String(chapter.total_pages);
    this.about(chapter);
    this.notice(chapter);
    this.outline(chapter.outline ?? []);
    this.rail = new Rail($("r-rail"), this.index, (number) => {
      this.goTo(number, { push: true });
      if (window.matchMedia(NARROW).matches) this.sidebar(false);
    });
    $("r-tab-outline").hidden = !(chapter.outline ?? []).length;
    this.sidebar(!window.matchMedia(NARROW).matches && this.sidebarWanted !== false);
    this.tab(this.sidebarTab ?? "pages");
    await this.highlightPassage(passage, page);
    this.goTo(page ?? 1);
    this.view.focus({ preventScroll: true });
  }

  /** Leave the reader (its state goes: the next chapter starts afresh). */
  close() {
    this.reset();
    this.show(false);
  }

  reset() {
    this.opens += 1;
    this.renders += 1;
    this.finds += 1;
    this.rail?.close();
    this.rail = null;
    this.chapter = null;
    this.index = null;
    this.drawn = null;
    this.current = 1;
    this.find = { query: "", hits: [], at: -1 };
    this.passage = null;
    this.image.removeAttribute("src");
    replace(this.layer);
    replace($("r-outline"));
    replace($("r-about"));
    $("r-notice").hidden = true;
    this.closeFind();
    this.search.clear();
    setText("r-title", "");
    setText("r-count", "");
    setText("r-status", "");
  }

  show(visible) {
    this.root.hidden = !visible;
    document.documentElement.classList.toggle("reading", visible);
    if (!visible && document.fullscreenElement) document.exitFullscreen().catch(() => {});
  }

  get visible() {
    return !this.root.hidden;
  }

  // ---- the page on screen ---------------------------------------------------------------

  /** Show page `number`; `push`: a jump the browser's Back should undo (links, outline). */
  goTo(number, { push = false } = {}) {
    if (!this.chapter) return;
    const page = clamp(Math.round(Number(number) || 1), 1, this.chapter.total_pages);
    const moved = page !== this.current || !this.drawn;
    this.current = page;
    $("r-page").value = String(page);
    $("r-prev").disabled = page <= 1;
    $("r-next").disabled = page >= this.chapter.total_pages;
    setText("r-status", `Page ${page} of ${this.chapter.total_pages}`);
    this.rail?.select(page);
    this.markOutline(page);
    let url = `${readerPath(this.chapter.book_id, this.chapter.chapter_id)}#page=${page}`;
    if (this.passage?.page === page) url += `&passage=${encodeURIComponent(this.passage.id)}`;
    if (push && moved) history.pushState({ reader: true }, "", url);
    else history.replaceState({ reader: true }, "", url);
    if (moved) this.render(page);
  }

  next() {
    this.goTo(this.current + 1);
  }

  previous() {
    this.goTo(this.current - 1);
  }

  async render(number) {
    const render = ++this.renders;
    let entry = this.index.known(number) ? this.index.peek(number) : null;
    try {
      entry ??= await this.index.page(number);
    } catch (error) {
      if (render === this.renders) this.handlers.error(`Could not read page ${number}: ${describe(error)}`);
      return;
    }
    if (render !== this.renders || !entry) return;
    this.drawn = { number, entry, words: null };
    replace(this.layer);
    this.view.scrollTop = 0;
    if (!entry.background_url) {
      this.image.removeAttribute("src");
      this.sheet.classList.add("no-image");
      this.sheet.dataset.message = this.chapter.pdf_url
        ? "This chapter keeps the PDF itself, with no page images: open it from About."
        : "This page has no image.";
    } else {
      this.sheet.classList.remove("no-image");
      this.image.alt = `Page ${number} of ${this.chapter.total_pages}`;
      this.image.dataset.page = String(number);
      this.image.dataset.retried = "";
      this.image.src = entry.background_url;
      this.image.decode().then(
        () => {
          if (render !== this.renders) return;
          readerStats.pagesShown += 1;
          if (readerStats.firstPageDrawnMs === null) {
            requestAnimationFrame(() => {
              readerStats.firstPageDrawnMs ??= performance.now();
            });
          }
          this.prefetch(number + 1);
        },
        () => {},
      );
    }
    this.layout();
    let words;
    try {
      words = await this.index.pageWords(number);
    } catch {
      return; // the image still reads; its text layer is missing
    }
    if (render !== this.renders) return;
    this.drawn.words = words;
    this.layer.style.width = `${words.width}px`;
    this.layer.style.height = `${words.height}px`;
    this.layout();
    this.drawLayers();
  }

  /** The layers over the page: text, highlights (find, passage) and links. */
  drawLayers() {
    const { number, words } = this.drawn ?? {};
    if (!words) return;
    const text = el("div", { class: "text-layer" });
    text.append(textLayer(words.words));
    const marks = el("div", { class: "mark-layer" });
    if (this.passage?.page === number) {
      marks.append(...highlights(passageBoxes(words.words, this.passage.text), "hl-passage"));
    }
    let current = null;
    if (this.find.query) {
      const hit = this.find.hits[this.find.at];
      findInWords(words.words, this.find.query).forEach((boxes, nth) => {
        const isCurrent = hit && hit.page === number && hit.nth === nth;
        const drawn = highlights(boxes, isCurrent ? "hl-find hl-current" : "hl-find");
        if (isCurrent) current = drawn[0];
        marks.append(...drawn);
      });
    }
    const links = el("div", { class: "link-layer" }, linkLayer(words.links ?? [], (page) => this.goTo(page, { push: true })));
    replace(this.layer, text, marks, links);
    const first = current ?? (this.passage?.page === number ? marks.querySelector(".hl-passage") : null);
    if (first) this.reveal(first);
  }

  /** Scroll the view so that `mark` (a highlight) is in the middle of it. */
  reveal(mark) {
    const scale = this.scale();
    const top = Number.parseFloat(mark.style.top) * scale + this.sheet.offsetTop;
    const left = Number.parseFloat(mark.style.left) * scale + this.sheet.offsetLeft;
    this.view.scrollTop = Math.max(0, top - this.view.clientHeight / 3);
    if (left > this.view.scrollLeft + this.view.clientWidth - 40 || left < this.view.scrollLeft) {
      this.view.scrollLeft = Math.max(0, left - this.view.clientWidth / 3);
    }
  }

  /** The next page's image and words, fetched while this one is read. */
  prefetch(number) {
    if (!this.chapter || number > this.chapter.total_pages) return;
    this.index.page(number).then(
      (entry) => {
        if (entry?.background_url) {
          const image = new Image();
          image.decoding = "async";
          image.src = entry.background_url;
        }
        this.index.pageWords(number).catch(() => {});
      },
      () => {},
    );
  }

  /** The page image failed: its URL expired (a tab open for hours). Fresh URLs, once. */
  imageFailed() {
    const number = Number(this.image.dataset.page);
    if (!number || this.image.dataset.retried) return;
    this.image.dataset.retried = "1";
    const render = this.renders;
    this.index.refresh(number).then(
      (entry) => {
        if (render === this.renders && entry?.background_url) this.image.src = entry.background_url;
      },
      (error) => this.handlers.error(`Could not load page ${number}: ${describe(error)}`),
    );
  }

  // ---- zoom ------------------------------------------------------------------------------

  savedZoom() {
    const saved = localStorage.getItem(ZOOM_KEY);
    if (saved === "width" || saved === "page") return { mode: saved, value: 1 };
    const value = Number(saved);
    return Number.isFinite(value) && value > 0 ? { mode: "scale", value } : { mode: "width", value: 1 };
  }

  /** CSS pixels per image pixel, for the zoom chosen and the view's size. */
  scale() {
    const entry = this.drawn?.entry;
    if (!entry?.width || !entry?.height) return 1;
    const width = Math.max(50, this.view.clientWidth - 2 * PAD);
    const height = Math.max(50, this.view.clientHeight - 2 * PAD);
    if (this.zoom.mode === "width") return width / entry.width;
    if (this.zoom.mode === "page") return Math.min(width / entry.width, height / entry.height);
    return (this.zoom.value * CSS_DPI) / this.pageDpi;
  }

  /** The zoom as a share of the printed size (what "100 %" means). */
  printedShare() {
    return (this.scale() * this.pageDpi) / CSS_DPI;
  }

  setZoom(mode, value = 1) {
    this.zoom = { mode, value };
    localStorage.setItem(ZOOM_KEY, mode === "scale" ? String(value) : mode);
    this.layout();
  }

  zoomBy(direction) {
    const share = this.printedShare();
    const steps = direction > 0 ? STEPS.filter((s) => s > share * 1.01) : STEPS.filter((s) => s < share * 0.99);
    const value = direction > 0 ? steps[0] : steps.at(-1);
    if (value) this.setZoom("scale", value);
  }

  /** Size the page and its layers for the zoom; keep the zoom menu saying what it is. */
  layout() {
    const entry = this.drawn?.entry;
    const select = $("r-zoom");
    const custom = select.querySelector("option[data-custom]");
    if (!entry?.width) return;
    const scale = this.scale();
    this.sheet.style.width = `${Math.round(entry.width * scale)}px`;
    this.sheet.style.height = `${Math.round(entry.height * scale)}px`;
    const words = this.drawn.words;
    // The layers are in the pixels of the words' image (the page image's size).
    const layerScale = words?.width ? (entry.width * scale) / words.width : scale;
    this.layer.style.transform = `scale(${layerScale})`;
    const share = Math.round(this.printedShare() * 100);
    const value = this.zoom.mode === "scale" ? String(this.zoom.value) : this.zoom.mode;
    if (PRESETS.includes(value)) {
      custom.hidden = true;
      select.value = value;
    } else {
      custom.hidden = false;
      custom.value = value;
      custom.textContent = `${share}%`;
      select.value = value;
    }
    setText("r-zoom-level", `${share}%`);
  }

  // ---- find in the chapter --------------------------------------------------------------------

  openFind() {
    $("r-findbar").hidden = false;
    $("r-find-input").focus();
    $("r-find-input").select();
  }

  closeFind() {
    $("r-findbar").hidden = true;
    this.finds += 1;
    if (this.find.query) {
      this.find = { query: "", hits: [], at: -1 };
      this.drawLayers();
    }
    setText("r-find-count", "");
    $("r-find-input").value = "";
  }

  /** Find `text` in every page; hits are listed in page order, and the first one from the
   * page shown on is shown. */
  async runFind(text) {
    const query = normalise(text);
    const run = ++this.finds;
    if (query === this.find.query && this.find.hits.length) return;
    this.find = { query, hits: [], at: -1 };
    if (!query) {
      setText("r-find-count", "");
      this.drawLayers();
      return;
    }
    setText("r-find-count", "Searching...");
    let texts;
    try {
      texts = await this.index.allTexts((read, total) => {
        if (run === this.finds && read < total) setText("r-find-count", `Searching... ${read}/${total} pages`);
      });
    } catch (error) {
      if (run === this.finds) setText("r-find-count", `Find failed: ${describe(error)}`);
      return;
    }
    if (run !== this.finds) return;
    const hits = [];
    for (let page = 1; page <= this.chapter.total_pages; page += 1) {
      const content = texts.get(page) ?? "";
      let nth = 0;
      for (let at = content.indexOf(query); at !== -1; at = content.indexOf(query, at + query.length)) {
        hits.push({ page, nth });
        nth += 1;
      }
    }
    this.find.hits = hits;
    if (!hits.length) {
      setText("r-find-count", "No matches");
      this.drawLayers();
      return;
    }
    const from = hits.findIndex((hit) => hit.page >= this.current);
    this.showHit(from === -1 ? 0 : from);
  }

  stepFind(direction) {
    const { hits } = this.find;
    if (!hits.length) {
      this.runFind($("r-find-input").value);
      return;
    }
    this.showHit((this.find.at + direction + hits.length) % hits.length);
  }

  showHit(at) {
    this.find.at = at;
    const hit = this.find.hits[at];
    setText("r-find-count", `${at + 1} of ${this.find.hits.length}`);
    if (hit.page !== this.current) this.goTo(hit.page);
    else this.drawLayers();
  }

  // ---- search results and passages ---------------------------------------------------------

  async openResult(result) {
    if (result.chapter_id !== this.chapter?.chapter_id) {
      this.handlers.open(result);
      return;
    }
    const number = result.open_page ?? result.page_number;
    this.passage = { page: number, text: result.content, id: result.chunk_id };
    if (window.matchMedia(NARROW).matches) this.sidebar(false);
    const same = number === this.current;
    this.goTo(number, { push: true });
    if (same) this.drawLayers();
  }

  /** The passage of search result `chunkId` to highlight on `page` (read again after a reload). */
  async highlightPassage(chunkId, page) {
    if (!chunkId || !page) return;
    let text = knownPassage(chunkId);
    if (!text) {
      try {
        const { body } = await this.api.get(`/api/v1/chunks/${encodeURIComponent(chunkId)}`);
        text = body?.data?.content ?? null;
      } catch {
        text = null; // the page opens without its highlight
      }
    }
    if (text) this.passage = { page, text, id: chunkId };
  }

  // ---- the sidebar: pages, outline, search, about ----------------------------------------------

  sidebar(open) {
    this.sidebarOpen = open;
    $("r-side").hidden = !open;
    $("r-sidebar").setAttribute("aria-expanded", String(open));
    this.root.classList.toggle("side-open", open);
    if (open) this.rail?.select(this.current);
    requestAnimationFrame(() => this.layout());
  }

  tab(name) {
    this.sidebarTab = name;
    for (const tab of ["pages", "outline", "search", "about"]) {
      const selected = tab === name;
      $(`r-tab-${tab}`).setAttribute("aria-selected", String(selected));
      $(`r-panel-${tab}`).hidden = !selected;
    }
    if (name === "pages") this.rail?.select(this.current);
  }

  outline(entries) {
    const items = entries.map((entry, i) => {
      const button = el(
        "button",
        { type: "button", class: "outline-entry", "data-page": entry.page, "data-i": i },
        el("span", { class: "outline-title" }, entry.title),
        el("span", { class: "outline-page" }, String(entry.page)),
      );
      button.style.paddingLeft = `${0.4 + (entry.level - 1) * 0.9}rem`;
      button.addEventListener("click", () => {
        this.goTo(entry.page, { push: true });
        if (window.matchMedia(NARROW).matches) this.sidebar(false);
      });
      return el("li", {}, button);
    });
    this.outlineEntries = entries;
    replace($("r-outline"), items);
  }

  markOutline(page) {
    const entries = this.outlineEntries ?? [];
    let at = -1;
    entries.forEach((entry, i) => {
      if (entry.page <= page) at = i;
    });
    for (const button of $("r-outline").querySelectorAll(".outline-entry")) {
      if (Number(button.dataset.i) === at) button.setAttribute("aria-current", "location");
      else button.removeAttribute("aria-current");
    }
  }

  about(chapter) {
    const remove = el("button", { type: "button", "data-action": "delete-chapter" }, "Delete chapter");
    remove.addEventListener("click", () => this.remove());
    const facts = [
      ["Book", chapter.book_id],
      ["File", chapter.source_filename],
      ["Pages", String(chapter.total_pages)],
      ["Search", chapter.search_status],
    ];
    replace(
      $("r-about"),
      el("h3", { class: "chapter-title" }, chapter.title),
      el(
        "dl",
        { class: "facts" },
        facts.map(([name, value]) => [el("dt", {}, name), el("dd", { class: `fact-${name.toLowerCase()}` }, value)]),
      ),
      chapter.repaired ? el("p", {}, "The PDF was damaged and repaired: some pages may be incomplete.") : null,
      chapter.pdf_url ? el("p", {}, el("a", { href: chapter.pdf_url, rel: "noopener" }, "Open the PDF")) : null,
      el("p", {}, remove),
    );
  }

  /** Said once, at the top: pages without a text layer of their own, what was done, what it found. */
  notice(chapter) {
    const total = chapter.total_pages;
    const ocr = chapter.ocr_pages ?? 0;
    const none = chapter.pages_without_text ?? 0;
    let text = "";
    if (none === total) {
      text =
        `None of the ${total} pages has text: they are images (a scan), and OCR read no words ` +
        "on them. Find, search and text selection cannot work in this chapter.";
    } else if (ocr || none) {
      const parts = [];
      if (ocr) {
        parts.push(
          `${ocr} of ${total} pages are scanned images: their text was read by OCR, so it may ` +
            "have mistakes, and its words sit only roughly where they are printed.",
        );
      }
      if (none) parts.push(`${none} page${none === 1 ? " has" : "s have"} no text at all: find and selection skip ${none === 1 ? "it" : "them"}.`);
      text = parts.join(" ");
    }
    $("r-notice").hidden = !text;
    setText("r-notice-text", text);
  }

  async remove() {
    const chapter = this.chapter;
    if (!chapter) return;
    const question =
      `Delete the chapter "${chapter.title}"?\n\n` +
      `Its ${chapter.total_pages} pages are deleted for good: their images, text and words, ` +
      "and its search passages. The job stays in My jobs (marked: chapter deleted), and the " +
      "uploaded PDF is kept.";
    if (!window.confirm(question)) return;
    try {
      await this.api.delete(this.base);
    } catch (error) {
      this.handlers.error(`Could not delete the chapter: ${describe(error)}`);
      return;
    }
    this.handlers.deleted(chapter);
  }

  // ---- wiring --------------------------------------------------------------------------------

  wire() {
    $("r-back").addEventListener("click", () => this.handlers.close());
    $("r-prev").addEventListener("click", () => this.previous());
    $("r-next").addEventListener("click", () => this.next());
    const goToTyped = () => {
      const typed = $("r-page").value.trim();
      if (/^\d+$/.test(typed)) this.goTo(typed, { push: true });
      else $("r-page").value = String(this.current); // nothing (or no number) typed: stay
    };
    $("r-page-form").addEventListener("submit", (event) => {
      event.preventDefault();
      goToTyped();
      this.view.focus({ preventScroll: true });
    });
    $("r-page").addEventListener("change", goToTyped);
    $("r-zoom-in").addEventListener("click", () => this.zoomBy(1));
    $("r-zoom-out").addEventListener("click", () => this.zoomBy(-1));
    $("r-zoom").addEventListener("change", (event) => {
      const value = event.target.value;
      if (value === "width" || value === "page") this.setZoom(value);
      else this.setZoom("scale", Number(value));
    });
    $("r-fullscreen").addEventListener("click", () => this.toggleFullscreen());
    $("r-sidebar").addEventListener("click", () => {
      this.sidebarWanted = !this.sidebarOpen;
      this.sidebar(!this.sidebarOpen);
    });
    for (const tab of ["pages", "outline", "search", "about"]) {
      $(`r-tab-${tab}`).addEventListener("click", () => this.tab(tab));
    }
    $("r-find-toggle").addEventListener("click", () => ($("r-findbar").hidden ? this.openFind() : this.closeFind()));
    $("r-search-toggle").addEventListener("click", () => {
      this.sidebar(true);
      this.tab("search");
      $("r-search-input").focus();
    });
    $("r-notice-close").addEventListener("click", () => ($("r-notice").hidden = true));
    let typing = null;
    $("r-find-input").addEventListener("input", (event) => {
      clearTimeout(typing);
      typing = setTimeout(() => this.runFind(event.target.value), 250);
    });
    $("r-find-input").addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        clearTimeout(typing);
        if (normalise(event.target.value) !== this.find.query) this.runFind(event.target.value);
        else this.stepFind(event.shiftKey ? -1 : 1);
      } else if (event.key === "Escape") {
        event.preventDefault();
        this.closeFind();
        this.view.focus({ preventScroll: true });
      }
    });
    $("r-find-next").addEventListener("click", () => this.stepFind(1));
    $("r-find-prev").addEventListener("click", () => this.stepFind(-1));
    $("r-find-close").addEventListener("click", () => this.closeFind());
    this.image.addEventListener("error", () => this.imageFailed());
    this.sheet.addEventListener("copy", (event) => this.copy(event));
    new ResizeObserver(() => this.layout()).observe(this.view);
    document.addEventListener("fullscreenchange", () => {
      $("r-fullscreen").setAttribute("aria-pressed", String(Boolean(document.fullscreenElement)));
      this.layout();
    });
    document.addEventListener("keydown", (event) => this.key(event));
  }

  /** Copy the selected words as text reads: words joined by one space, lines by a newline. */
  copy(event) {
    const selected = window.getSelection()?.toString() ?? "";
    if (!selected) return;
    const text = selected
      .split("\n")
      .map((line) => line.replace(/\s+/g, " ").trim())
      .filter(Boolean)
      .join("\n");
    event.clipboardData.setData("text/plain", text);
    event.preventDefault();
  }

  toggleFullscreen() {
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    else this.root.requestFullscreen?.().catch((error) => this.handlers.error(`Full screen: ${describe(error)}`));
  }

  /** Scroll the page by most of a screen; false when it is already at that end. */
  scrollPage(direction) {
    const view = this.view;
    const end = direction > 0 ? view.scrollTop + view.clientHeight >= view.scrollHeight - 2 : view.scrollTop <= 0;
    if (end) return false;
    view.scrollTop += direction * view.clientHeight * 0.9;
    return true;
  }

  key(event) {
    if (!this.visible || !this.chapter) return;
    const target = event.target;
    const typing =
      target instanceof HTMLElement &&
      (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
    const command = event.ctrlKey || event.metaKey;
    if (command && (event.key === "f" || event.key === "F")) {
      event.preventDefault();
      this.openFind();
      return;
    }
    if (event.key === "F3") {
      event.preventDefault();
      if ($("r-findbar").hidden) this.openFind();
      else this.stepFind(event.shiftKey ? -1 : 1);
      return;
    }
    if (command && ["+", "=", "-"].includes(event.key)) {
      event.preventDefault();
      this.zoomBy(event.key === "-" ? -1 : 1);
      return;
    }
    if (typing || command || event.altKey) return;
    const keys = {
      ArrowRight: () => this.next(),
      ArrowLeft: () => this.previous(),
      PageDown: () => this.scrollPage(1) || this.next(),
      PageUp: () => this.scrollPage(-1) || this.previous(),
      " ": () => (event.shiftKey ? this.scrollPage(-1) || this.previous() : this.scrollPage(1) || this.next()),
      Home: () => this.goTo(1, { push: true }),
      End: () => this.goTo(this.chapter.total_pages, { push: true }),
      "+": () => this.zoomBy(1),
      "=": () => this.zoomBy(1),
      "-": () => this.zoomBy(-1),
      "/": () => this.openFind(),
      s: () => $("r-sidebar").click(),
      f: () => this.toggleFullscreen(),
      g: () => $("r-page").select(),
      Escape: () => {
        if (!$("r-findbar").hidden) this.closeFind();
        else if (this.sidebarOpen && window.matchMedia(NARROW).matches) this.sidebar(false);
      },
    };
    const action = keys[event.key];
    // A focused button keeps Space and Enter for itself; a thumbnail keeps the arrows too.
    if (!action || (target instanceof HTMLButtonElement && event.key === " ")) return;
    event.preventDefault();
    action();
  }
}
