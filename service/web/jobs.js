// "My jobs": GET /api/v1/books/jobs, newest first, 20 at a time. Each job's JSON names its book
// and file (any browser can open any of the user's chapters) and says when its chapter was
// deleted: such a job offers no Read.

import { JOBS } from "./api.js";
import { el, replace } from "./element.js";
import { TERMINAL } from "./watch.js";

/** What a job is called on screen: its file's name (jobs made before it was kept: its id). */
export function jobName(job) {
  return job.filename || `Job ${job.job_id.slice(0, 8)}`;
}

/** Whether a job's chapter can be read: completed, and not deleted since. */
export function readable(job) {
  return job.status === "completed" && Boolean(job.result) && !job.chapter_deleted_at;
}

/** The job's message as it stands now (a deleted chapter says so, not "Chapter created"). */
export function jobMessage(job) {
  if (job.chapter_deleted_at) return "Its chapter was deleted";
  return job.error || job.message;
}

export class JobList {
  /** actions: open(job) (watch it), read(job) (its chapter), cancel(job), remove(job). */
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
   * A listed job's newer state (from the events of the job being watched, or an action): its
   * row follows without reading the list again (rebuilt when its status or chapter changed).
   */
  update(job) {
    const row = this.rowOf(job.job_id);
    if (!row) return;
    const before = this.latest.get(job.job_id);
    if (before?.status !== job.status || readable(before) !== readable(job)) {
      row.replaceWith(this.row(job));
      return;
    }
    this.latest.set(job.job_id, job);
    row.querySelector("progress")?.setAttribute("value", String(job.progress));
    row.querySelector(".job-message").textContent = jobMessage(job);
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
    const finished = TERMINAL.has(job.status);
    const button = (label, action) => {
      const node = el("button", { type: "button", "data-action": label.toLowerCase() }, label);
      node.addEventListener("click", () => action(current()));
      return node;
    };
    const actions = [
      readable(job) ? button("Read", this.actions.read) : null,
      finished ? null : button("Open", this.actions.open),
      finished ? null : button("Cancel", this.actions.cancel),
      finished ? button("Delete", this.actions.remove) : null,
    ];
    // A bar only while it means something: running, or done. A failed or cancelled job's
    // percentage is where it stopped, not progress.
    const bar = job.status === "failed" || job.status === "cancelled" ? null : el("progress", { max: 100, value: job.progress });
    const deleted = job.chapter_deleted_at ? " job-chapter-deleted" : "";
    return el(
      "li",
      { class: `job job-${job.status}${deleted}`, "data-job": job.job_id },
      el(
        "span",
        { class: "job-what" },
        el("span", { class: "job-name" }, jobName(job)),
        el("span", { class: "job-book" }, `book ${job.book_id}`),
      ),
      el("span", { class: "job-status" }, job.status),
      bar ?? el("span", { class: "job-bar" }),
      el("span", { class: "job-message" }, jobMessage(job)),
      el("span", { class: "job-actions" }, actions),
    );
  }
}
