// A chapter's pages as the reader needs them: image URLs, sizes and where their text came from,
// read in windows of 100 (GET .../pages?text=false), each window read again before its URLs
// expire (urls_expire_at), so a tab left open for hours never shows a broken image. Words and
// links of a page (GET .../pages/{n}/words) are cached by the browser (ETag) and here.

export const WINDOW = 100; // the pages endpoint's largest page
// Read a window again this long before its URLs expire (a signed URL lives at least 55 min).
const REFRESH_AHEAD_MS = 5 * 60_000;
const WORDS_KEPT = 40; // pages whose words stay in memory

export class PageIndex {
  /** `base`: the chapter's API path; `total`: its page count. */
  constructor(api, base, total) {
    this.api = api;
    this.base = base;
    this.total = total;
    this.windows = new Map(); // first page index of a window -> {promise, expiresAt, pages}
    this.words = new Map(); // page number -> promise of {width, height, words, links}
    this.texts = null; // page number -> normalised text, for find (loaded on demand)
  }

  windowOf(number) {
    return Math.floor((number - 1) / WINDOW) * WINDOW;
  }

  /** Whether page `number`'s URLs are known and fresh now (no read needed). */
  known(number) {
    const window = this.windows.get(this.windowOf(number));
    return Boolean(window?.pages && !this.stale(window));
  }

  /** Page `number` if its window is loaded (fresh or not), else null: for drawing at once. */
  peek(number) {
    return this.windows.get(this.windowOf(number))?.pages?.[number - 1 - this.windowOf(number)] ?? null;
  }

  stale(window) {
    return window.expiresAt !== null && Date.now() > window.expiresAt - REFRESH_AHEAD_MS;
  }

  /** Page `number` (1-based): {page_number, background_url, thumbnail_url, width, height, ...}. */
  async page(number) {
    const start = this.windowOf(number);
    let window = this.windows.get(start);
    if (!window || (window.pages && this.stale(window)) || window.failed) {
      window = this.load(start);
    }
    const pages = await window.promise;
    return pages[number - 1 - start] ?? null;
  }

  /** Read the window that starts at `start` again (its URLs expired, or an image failed). */
  load(start) {
    const window = { promise: null, expiresAt: null, pages: null, failed: false };
    const path = `${this.base}/pages?offset=${start}&limit=${WINDOW}&text=false`;
    window.promise = this.api.get(path).then(
      ({ body }) => {
        window.pages = body.items;
        window.expiresAt = body.urls_expire_at ? Date.parse(body.urls_expire_at) : null;
        return body.items;
      },
      (error) => {
        window.failed = true;
        throw error;
      },
    );
    this.windows.set(start, window);
    return window;
  }

  /** After an image of page `number` failed to load (an expired URL): fresh URLs for it. */
  async refresh(number) {
    const start = this.windowOf(number);
    const current = this.windows.get(start);
    if (current && !current.pages && !current.failed) return this.page(number); // on its way
    await this.load(start).promise;
    return this.page(number);
  }

  /** The page's words and links: {width, height, words: [[x0,y0,x1,y1,text,block,line]], links}. */
  pageWords(number) {
    let found = this.words.get(number);
    if (!found) {
      found = this.api.getCached(`${this.base}/pages/${number}/words`).then(({ body }) => body);
      found.catch(() => this.words.delete(number));
      this.words.set(number, found);
      if (this.words.size > WORDS_KEPT) this.words.delete(this.words.keys().next().value);
    }
    return found;
  }

  /**
   * Every page's text, normalised for find (lower case, one space between words), read 100
   * pages at a time; `onProgress(read, total)` after each window. Resolves to a Map.
   */
  async allTexts(onProgress) {
    if (this.texts?.done) return this.texts.map;
    if (!this.texts) this.texts = { map: new Map(), done: false, next: 0 };
    const state = this.texts;
    while (state.next < this.total) {
      const offset = state.next;
      const { body } = await this.api.get(`${this.base}/pages?offset=${offset}&limit=${WINDOW}`);
      for (const item of body.items) state.map.set(item.page_number, normalise(item.content ?? ""));
      state.next = offset + WINDOW;
      onProgress?.(Math.min(state.next, this.total), this.total);
    }
    state.done = true;
    return state.map;
  }
}

/** Text as find compares it: lower case, words separated by one space. */
export function normalise(text) {
  return text.toLowerCase().split(/\s+/).filter(Boolean).join(" ");
}
