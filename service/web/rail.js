// The thumbnail rail, virtualised: one fixed-height slot per page, and only the slots in view
// (and a couple either side) exist in the page at all, so a 5,000-page chapter costs a screenful
// of thumbnails and of elements, however far it is scrolled. Slots read their URLs from the
// chapter's page windows (pages.js) as they come into view.

import { el } from "./element.js";

export const SLOT_HEIGHT = 172; // px: a 120 px wide thumbnail of an A4 page, its number, a gap
const OVERSCAN = 2;

export class Rail {
  /** `index`: the PageIndex; `onPick(number)`: a thumbnail was chosen. */
  constructor(container, index, onPick) {
    this.container = container;
    this.index = index;
    this.onPick = onPick;
    this.current = 1;
    this.slots = new Map(); // page number -> its button
    this.spacer = el("div", { class: "rail-spacer" });
    this.spacer.style.height = `${index.total * SLOT_HEIGHT}px`;
    container.replaceChildren(this.spacer);
    this.frame = null;
    this.onScroll = () => this.schedule();
    container.addEventListener("scroll", this.onScroll, { passive: true });
    this.resize = new ResizeObserver(() => this.schedule());
    this.resize.observe(container);
  }

  close() {
    this.container.removeEventListener("scroll", this.onScroll);
    this.resize.disconnect();
    cancelAnimationFrame(this.frame);
    this.container.replaceChildren();
    this.slots.clear();
  }

  schedule() {
    if (this.frame === null) {
      this.frame = requestAnimationFrame(() => {
        this.frame = null;
        this.draw();
      });
    }
  }

  /** The pages whose slots are in view, with OVERSCAN either side. */
  range() {
    const top = this.container.scrollTop;
    const height = this.container.clientHeight;
    if (height === 0) return [1, 0]; // hidden: draw nothing
    const first = Math.max(1, Math.floor(top / SLOT_HEIGHT) + 1 - OVERSCAN);
    const last = Math.min(this.index.total, Math.ceil((top + height) / SLOT_HEIGHT) + OVERSCAN);
    return [first, last];
  }

  draw() {
    const [first, last] = this.range();
    for (const [number, slot] of this.slots) {
      if (number < first || number > last) {
        slot.remove();
        this.slots.delete(number);
      }
    }
    for (let number = first; number <= last; number += 1) {
      if (!this.slots.has(number)) this.slots.set(number, this.slot(number));
    }
  }

  slot(number) {
    const button = el(
      "button",
      {
        type: "button",
        class: "thumb",
        "data-page": number,
        "aria-label": `Page ${number}`,
        "aria-current": number === this.current ? "page" : null,
      },
      el("span", { class: "thumb-frame" }),
      el("span", { class: "thumb-number" }, String(number)),
    );
    button.style.top = `${(number - 1) * SLOT_HEIGHT}px`;
    button.addEventListener("click", () => this.onPick(number));
    this.spacer.append(button);
    const known = this.index.peek(number);
    if (known && this.index.known(number)) this.fill(button, known);
    else {
      this.index.page(number).then(
        (page) => this.slots.get(number) === button && page && this.fill(button, page),
        () => {},
      );
    }
    return button;
  }

  fill(button, page) {
    if (!page.thumbnail_url) return;
    const image = el("img", { alt: "", decoding: "async", src: page.thumbnail_url });
    image.addEventListener("error", () => this.retry(button, page.page_number), { once: true });
    button.querySelector(".thumb-frame").replaceChildren(image);
  }

  /** A thumbnail that failed (its URL expired): fresh URLs, one more try. */
  retry(button, number) {
    this.index.refresh(number).then(
      (page) => {
        if (this.slots.get(number) !== button || !page?.thumbnail_url) return;
        button.querySelector("img")?.setAttribute("src", page.thumbnail_url);
      },
      () => {},
    );
  }

  /** Mark page `number` as the one shown, and scroll it into the rail's view. */
  select(number) {
    this.slots.get(this.current)?.removeAttribute("aria-current");
    this.current = number;
    this.slots.get(number)?.setAttribute("aria-current", "page");
    const top = (number - 1) * SLOT_HEIGHT;
    const { scrollTop, clientHeight } = this.container;
    if (top < scrollTop || top + SLOT_HEIGHT > scrollTop + clientHeight) {
      this.container.scrollTop = Math.max(0, top - (clientHeight - SLOT_HEIGHT) / 2);
    }
    this.schedule();
  }

  /** The slot of page `number` (drawn now if needed), to give it focus. */
  focus(number) {
    this.select(number);
    this.draw();
    this.slots.get(number)?.focus();
  }
}
