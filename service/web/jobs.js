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
  /** actions: open(job), cancel(job), remove(job) (a finished job only). */
  constructor(api, container, actions) {
    this.api = api;
    this.container = container;
    this.actions = actions;
    this.latest = new Map(); // job_id -> the newest state known of each listed job
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
    this.latest.clear();
    const rows = body.items.map((job) => this.row(job));
    const empty = el("li", { class: "empty" }, "No jobs yet: upload a PDF above.");
    replace(this.container, rows.length ? rows : empty);
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

  /**
   * A listed job's newer state, from the events of the job being watched: its row follows
   * without reading the list again (rebuilt when its status, and so its actions, changed).
   */
  update(job) {
    const row = this.rowOf(job.job_id);
    if (!row) return;
    if (this.latest.get(job.job_id)?.status !== job.status) {
      row.replaceWith(this.row(job));
      return;
    }
    this.latest.set(job.job_id, job);
    row.querySelector("progress").value = job.progress;
    row.querySelector(".job-message").textContent = job.error || job.message;
  }

  /** Take a deleted job off the list. */
  drop(jobId) {
    this.rowOf(jobId)?.remove();
    this.latest.delete(jobId);
  }

  rowOf(jobId) {
    return [...this.container.children].find((row) => row.dataset.job === jobId) ?? null;
  }

  row(job) {
    this.latest.set(job.job_id, job);
    const current = () => this.latest.get(job.job_id) ?? job;
    const known = recall(job.job_id);
    const finished = TERMINAL.has(job.status);
    const button = (label) =>
      el("button", { type: "button", "data-action": label.toLowerCase() }, label);
    const open = button(job.status === "completed" ? "Read" : "Open");
    open.addEventListener("click", () => this.actions.open(current()));
    const cancel = finished ? null : button("Cancel");
    cancel?.addEventListener("click", () => this.actions.cancel(current()));
    const remove = finished ? button("Delete") : null;
    remove?.addEventListener("click", () => this.actions.remove(current()));
    return el(
      "li",
      { class: `job job-${job.status}`, "data-job": job.job_id },
      el("span", { class: "job-name" }, known?.filename ?? job.job_id),
      el("span", { class: "job-status" }, job.status),
      el("progress", { max: 100, value: job.progress }),
      el("span", { class: "job-message" }, job.error || job.message),
      el("span", { class: "job-actions" }, open, cancel, remove),
    );
  }
}
