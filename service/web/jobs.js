// "My jobs": GET /api/v1/books/jobs, newest first, 20 at a time. What the page learnt when it
// created a job (its book and file name: the job's JSON carries neither) is remembered in this
// browser, so a listed job can be opened as a chapter.

import { JOBS } from "./api.js";
import { el, replace } from "./element.js";
import { TERMINAL } from "./watch.js";

const MEMORY_KEY = "pcj.jobs";
const MEMORY_LIMIT = 200;

function memory() {
  try {
    return JSON.parse(localStorage.getItem(MEMORY_KEY) ?? "{}") ?? {};
  } catch {
    return {};
  }
}

/** Remember a job this browser created: {book_id, filename}. */
export function remember(jobId, details) {
  const known = memory();
  known[jobId] = { ...details, at: Date.now() };
  const newest = Object.entries(known).sort((a, b) => b[1].at - a[1].at).slice(0, MEMORY_LIMIT);
  localStorage.setItem(MEMORY_KEY, JSON.stringify(Object.fromEntries(newest)));
}

export function recall(jobId) {
  return memory()[jobId] ?? null;
}

export class JobList {
  /** actions: open(job), cancel(job). */
  constructor(api, container, actions) {
    this.api = api;
    this.container = container;
    this.actions = actions;
    this.loads = 0;
    this.closed = false;
  }

  /**
   * Read the newest 20 jobs and list them. Resolves to the jobs, or to null when the list was
   * closed (signed out) or a newer load started while this one was under way.
   */
  async load() {
    const load = ++this.loads;
    const { body } = await this.api.get(`${JOBS}/?limit=20`);
    if (this.closed || load !== this.loads) return null;
    const rows = body.items.map((job) => this.row(job));
    replace(this.container, rows.length ? rows : el("li", { class: "empty" }, "No jobs yet: upload a PDF above."));
    this.more(body.next_cursor);
    return body.items;
  }

  /** Stop listing (signed out): empty the list and ignore answers still on their way. */
  close() {
    this.closed = true;
    replace(this.container);
  }

  more(cursor) {
    if (!cursor) return;
    const button = el("button", { type: "button", class: "more" }, "More");
    button.addEventListener("click", async () => {
      button.remove();
      const { body } = await this.api.get(`${JOBS}/?limit=20&cursor=${encodeURIComponent(cursor)}`);
      if (this.closed) return;
      for (const job of body.items) this.container.append(this.row(job));
      this.more(body.next_cursor);
    });
    this.container.append(el("li", { class: "more-row" }, button));
  }

  row(job) {
    const known = recall(job.job_id);
    const open = el("button", { type: "button" }, job.status === "completed" ? "Read" : "Open");
    open.addEventListener("click", () => this.actions.open(job));
    const cancel = TERMINAL.has(job.status) ? null : el("button", { type: "button" }, "Cancel");
    cancel?.addEventListener("click", () => this.actions.cancel(job));
    return el(
      "li",
      { class: `job job-${job.status}`, "data-job": job.job_id },
      el("span", { class: "job-name" }, known?.filename ?? job.job_id),
      el("span", { class: "job-status" }, job.status),
      el("progress", { max: 100, value: job.progress }),
      el("span", { class: "job-message" }, job.error || job.message),
      el("span", { class: "job-actions" }, open, cancel),
    );
  }
}
