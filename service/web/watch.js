// Watching one job: its progress and pages pushed over the event stream
// (GET /api/v1/books/jobs/{id}/events, with a stream token since EventSource sends no headers),
// falling back to polling GET /api/v1/books/jobs/{id} at seed 002's interval when the stream
// cannot be held. Polling honours Retry-After and backs off while the API is unreachable
// (no answer, 502, 503, 504), saying "Reconnecting..."; once a poll gets through, the stream is
// tried again (with its own backoff, so a proxy that cannot stream costs one try a minute).
// A job that stops moving (its worker died: the job stays "processing" until the sweeper hands
// it to another worker, STALE_AFTER_S later) is reported through onStall.

import { ApiError, JOBS } from "./api.js";

export const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const MAX_BACKOFF_MS = 30_000;
const MAX_STREAM_RETRY_MS = 60_000;
const MAX_STATES = 1000;

/**
 * Seconds without progress (a new status, percentage or message, or a stored page) before the
 * watch reports a stall. The service's sweeper hands a dead worker's job on after STALE_AFTER_S
 * (60 s by default), so a note after 20 s tells a user why the count froze well before that.
 */
export const STALL_AFTER_S = 20;

/** What the page did to follow jobs, for people and tests (window.pcj.stats). */
export const stats = {
  streamsOpened: 0,
  streamsOpen: 0, // EventSources not closed yet
  streamProgressEvents: 0,
  streamPageEvents: 0,
  streamFailures: 0,
  polls: 0,
  pollFailures: 0,
  // [{status, progress, via}] in the order the page learnt them (the last MAX_STATES)
  states: [],
};

export class JobWatch {
  /**
   * handlers: onState(job, via), onPage(pageEvent), onConnection(text), onError(message),
   * onStall(stalled, job): true after `stallAfterS` seconds without progress while the API
   * answers, false as soon as progress arrives (or the watch stops).
   * @param {{pollIntervalS?: number, stallAfterS?: number}} [options]
   */
  constructor(api, jobId, handlers, { pollIntervalS = 2, stallAfterS = STALL_AFTER_S } = {}) {
    this.api = api;
    this.jobId = jobId;
    this.handlers = handlers;
    this.intervalMs = pollIntervalS * 1000;
    this.stallAfterMs = stallAfterS * 1000;
    this.stallTimer = null;
    this.stalled = false;
    this.lastJob = null;
    this.pagesSeen = new Set(); // a reconnected stream sends the stored pages again: no progress
    this.source = null;
    this.timer = null;
    this.etag = null;
    this.done = false;
    this.failures = 0; // polls in a row that did not reach the API
    this.streamBackoffMs = this.intervalMs;
    this.streamRetryAt = 0;
  }

  get path() {
    return `${JOBS}/${encodeURIComponent(this.jobId)}`;
  }

  start() {
    this.progressed();
    this.openStream();
  }

  stop() {
    this.done = true;
    this.closeStream();
    clearTimeout(this.timer);
    clearTimeout(this.stallTimer);
    this.setStalled(false);
  }

  /** The job moved: clear a reported stall and count again from now. */
  progressed() {
    this.setStalled(false);
    clearTimeout(this.stallTimer);
    if (!this.done) this.stallTimer = setTimeout(() => this.stallDue(), this.stallAfterMs);
  }

  stallDue() {
    if (this.done) return;
    // While polls fail, "Reconnecting..." is the news: the job may well be moving.
    if (this.failures > 0) this.progressed();
    else this.setStalled(true);
  }

  setStalled(stalled) {
    if (stalled === this.stalled) return;
    this.stalled = stalled;
    this.handlers.onStall?.(stalled, this.lastJob);
  }

  closeStream() {
    if (this.source) {
      this.source.close();
      this.source = null;
      stats.streamsOpen -= 1;
    }
  }

  async openStream() {
    this.handlers.onConnection("Connecting...");
    let token;
    try {
      ({ body: { token } } = await this.api.post(`${this.path}/stream-token`));
    } catch (error) {
      this.streamFailed(error);
      return;
    }
    if (this.done) return;
    const source = new EventSource(`${this.path}/events?token=${encodeURIComponent(token)}`);
    this.source = source;
    stats.streamsOpened += 1;
    stats.streamsOpen += 1;
    source.addEventListener("open", () => this.handlers.onConnection("Live"));
    source.addEventListener("progress", (event) => {
      stats.streamProgressEvents += 1;
      this.streamBackoffMs = this.intervalMs; // this stream works: retry soon if it breaks
      this.state(JSON.parse(event.data), "stream");
    });
    source.addEventListener("page", (event) => {
      stats.streamPageEvents += 1;
      const page = JSON.parse(event.data);
      if (!this.pagesSeen.has(page.page_number)) {
        this.pagesSeen.add(page.page_number);
        this.progressed();
      }
      this.handlers.onPage(page);
    });
    source.addEventListener("error", () => {
      if (this.source !== source || this.done) return;
      // The stream broke (API gone, proxy timeout, token refused): poll instead.
      this.closeStream();
      this.streamFailed(null);
    });
  }

  streamFailed(error) {
    if (error instanceof ApiError && [401, 403, 404].includes(error.status)) {
      this.fail(error.message);
      return;
    }
    stats.streamFailures += 1;
    this.streamRetryAt = Date.now() + this.streamBackoffMs;
    this.streamBackoffMs = Math.min(this.streamBackoffMs * 2, MAX_STREAM_RETRY_MS);
    this.schedulePoll(0);
  }

  schedulePoll(delayMs) {
    clearTimeout(this.timer);
    if (!this.done) this.timer = setTimeout(() => this.poll(), delayMs);
  }

  async poll() {
    if (this.done) return;
    const headers = this.etag ? { "If-None-Match": this.etag } : {};
    try {
      const response = await this.api.get(this.path, { headers });
      stats.polls += 1;
      this.failures = 0;
      this.etag = response.headers.get("etag") ?? this.etag;
      if (response.status === 200) this.state(response.body, "poll");
      if (this.done) return;
      if (Date.now() >= this.streamRetryAt) {
        this.openStream();
        return;
      }
      this.handlers.onConnection(`Polling every ${this.intervalMs / 1000} s`);
      const retryAfter = Number.parseInt(response.headers.get("retry-after") ?? "", 10);
      this.schedulePoll(Number.isFinite(retryAfter) ? retryAfter * 1000 : this.intervalMs);
    } catch (error) {
      stats.pollFailures += 1;
      if (!(error instanceof ApiError)) throw error;
      if ([401, 403, 404].includes(error.status)) {
        this.fail(error.message);
        return;
      }
      this.failures += 1;
      this.setStalled(false);
      const backoff = Math.min(this.intervalMs * 2 ** this.failures, MAX_BACKOFF_MS);
      if (error.unreachable) this.handlers.onConnection("Reconnecting...");
      else this.handlers.onConnection(`Retrying: ${error.message}`);
      this.schedulePoll(error.retryAfterS !== null ? error.retryAfterS * 1000 : backoff);
    }
  }

  state(job, via) {
    if (this.done) return; // an answer that arrived after stop()
    const last = this.lastJob;
    this.lastJob = job;
    const moved =
      !last ||
      last.status !== job.status ||
      last.progress !== job.progress ||
      last.message !== job.message;
    if (moved) this.progressed();
    stats.states.push({ status: job.status, progress: job.progress, via });
    if (stats.states.length > MAX_STATES) stats.states.splice(0, stats.states.length - MAX_STATES);
    this.handlers.onState(job, via);
    if (TERMINAL.has(job.status)) {
      this.stop();
      this.handlers.onConnection("");
    }
  }

  fail(message) {
    this.stop();
    this.handlers.onConnection("");
    this.handlers.onError(message);
  }
}
