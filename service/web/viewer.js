// The pages of a running job as they are rendered (thumbnails), in page order; a finished
// chapter is read in the reader (reader.js). All text is set as text.

import { JOBS } from "./api.js";
import { el, replace } from "./element.js";

const PAGE_BATCH = 100; // the pages endpoints' largest page
const REFRESH_DELAY_MS = 300; // page events that come together cost one read

function pageFigure(page, imageUrl, extra = []) {
  const image = imageUrl
    ? el("img", {
        src: imageUrl,
        loading: "lazy",
        decoding: "async",
        alt: `Page ${page.page_number}`,
        width: page.width,
        height: page.height,
      })
    : el("div", { class: "no-image" }, "No image");
  return el(
    "figure",
    { class: "page", "data-page": page.page_number },
    image,
    el("figcaption", {}, `Page ${page.page_number}`, page.has_text === false ? " (image only)" : ""),
    ...extra,
  );
}

/** The pages of a running job, shown as each is stored. */
export class LivePages {
  constructor(api, jobId, container) {
    this.api = api;
    this.jobId = jobId;
    this.container = container;
    this.shown = new Map(); // page_number -> figure
    this.timer = null;
    this.stopped = false;
    replace(container);
  }

  /** A `page` event: shown at once when it carries its URLs, else read from /pages soon. */
  notify(event) {
    if (event.thumbnail_url || event.background_url) this.show(event);
    else if (!this.shown.has(event.page_number)) this.refreshSoon();
  }

  refreshSoon() {
    if (this.timer === null) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.refresh().catch(() => {}); // the next event or poll tries again
      }, REFRESH_DELAY_MS);
    }
  }

  async refresh() {
    const path = `${JOBS}/${encodeURIComponent(this.jobId)}/pages`;
    for (let offset = 0; ; offset += PAGE_BATCH) {
      const { body } = await this.api.get(`${path}?offset=${offset}&limit=${PAGE_BATCH}`);
      if (this.stopped) return;
      for (const page of body.items) this.show(page);
      if (body.items.length < PAGE_BATCH) return;
    }
  }

  show(page) {
    if (this.stopped || this.shown.has(page.page_number)) return;
    const figure = pageFigure(page, page.thumbnail_url || page.background_url);
    // In page order, whatever order they were stored in.
    const after = [...this.shown.keys()].filter((n) => n > page.page_number).sort((a, b) => a - b)[0];
    this.container.insertBefore(figure, after === undefined ? null : this.shown.get(after));
    this.shown.set(page.page_number, figure);
  }

  /** Show no more pages (reads still on their way are dropped). */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
  }

  /** Stop, and take the pages shown off the screen (a cancelled or failed job kept none). */
  clear() {
    this.stop();
    this.shown.clear();
    replace(this.container);
  }
}
