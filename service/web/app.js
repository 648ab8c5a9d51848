// The page: sign in, upload a PDF (with upload progress), watch its job become a chapter (progress
// and pages pushed over the event stream, or polled), read the chapter; the list of my jobs.
//
// Start-up hook: `/?stall_after_s=N` lowers how long the page waits without progress before it
// says the job is not moving (STALL_AFTER_S in watch.js, 20 s); the browser tests use it.

import { Api, ApiError, JOBS } from "./api.js";
import { DevAuth, FirebaseAuth } from "./auth.js";
import { replace, setText } from "./element.js";
import { JobList, recall, remember } from "./jobs.js";
import { LivePages, chapterView } from "./viewer.js";
import { JobWatch, STALL_AFTER_S, TERMINAL, stats } from "./watch.js";

const $ = (id) => document.getElementById(id);
const BOOK_KEY = "pcj.book";

const page = {
  config: null,
  auth: null,
  api: null,
  jobs: null,
  watch: null,
  live: null,
  job: null, // the job on screen
  screen: 0, // bumped whenever the job on screen changes: late answers for an older one are dropped
  stallAfterS: stallAfterS(),
};
window.pcj = { stats }; // what the page did to follow jobs: for people and tests

function showError(message) {
  $("error").hidden = !message;
  setText("error", message ?? "");
}

/** STALL_AFTER_S, or the `stall_after_s` query parameter when it is a positive number. */
function stallAfterS() {
  const value = Number(new URLSearchParams(window.location.search).get("stall_after_s"));
  return Number.isFinite(value) && value > 0 ? value : STALL_AFTER_S;
}

function showNotice(message) {
  $("notice").hidden = !message;
  setText("notice", message ?? "");
}

function describe(error) {
  return error instanceof ApiError || error instanceof Error ? error.message : String(error);
}

// ---- signing in ---------------------------------------------------------------------------

async function start() {
  const response = await fetch("/config.json", { cache: "no-store" });
  page.config = await response.json();
  $("loading").hidden = true;
  $("book-id").value = localStorage.getItem(BOOK_KEY) || "my-book";
  if (page.config.dev_sign_in) {
    page.auth = new DevAuth(page.config.firebase_project_id);
    $("dev-sign-in").hidden = false;
    if (page.auth.user) signedIn(page.auth.user);
    else $("sign-in").hidden = false;
  } else if (page.config.firebase) {
    $("sign-in").hidden = false;
    $("firebase-sign-in").hidden = false;
    try {
      page.auth = await FirebaseAuth.create(page.config.firebase, (user) =>
        user ? signedIn(user) : signedOut(),
      );
    } catch (error) {
      showError(`Could not load Firebase sign-in: ${describe(error)}`);
    }
  } else {
    $("sign-in").hidden = false;
    $("no-sign-in").hidden = false;
  }
}

function signedIn(user) {
  clearScreen(); // nothing of whoever used this page before
  page.api = new Api(() => page.auth.getToken());
  page.jobs = new JobList(page.api, $("job-list"), {
    open: openJob,
    cancel: cancelJob,
    remove: deleteJob,
  });
  $("sign-in").hidden = true;
  $("app").hidden = false;
  $("who").hidden = false;
  setText("who-name", user);
  refreshJobs().then(resumeWatching);
}

function signedOut() {
  clearScreen();
  $("app").hidden = true;
  $("who").hidden = true;
  setText("who-name", "");
  $("sign-in").hidden = false;
}

/**
 * Take the signed-in user's things off the page: the job on screen (its watch stopped and its
 * stream closed), its pages, the chapter, the upload's progress and the list of jobs.
 */
function clearScreen() {
  stopWatching();
  page.job = null;
  page.screen += 1;
  page.jobs?.close();
  page.jobs = null;
  $("job").hidden = true;
  const texts = ["job-name", "job-status", "job-percent", "job-message", "connection"];
  for (const id of [...texts, "upload-text"]) setText(id, "");
  $("job-progress").value = 0;
  replace($("live-pages"));
  $("chapter").hidden = true;
  replace($("chapter-view"));
  $("upload-progress").hidden = true;
  $("upload-progress").value = 0;
  $("file").value = "";
  showNotice(null);
  showError(null);
}

/** After a (re)load: follow the newest job still running, unless one is on screen already. */
function resumeWatching(jobs) {
  const running = jobs?.find((job) => !TERMINAL.has(job.status));
  if (running && !page.job) watchJob(running);
}

$("dev-sign-in").addEventListener("submit", (event) => {
  event.preventDefault();
  try {
    page.auth.signIn($("dev-user").value.trim());
    signedIn(page.auth.user);
  } catch (error) {
    showError(describe(error));
  }
});

$("google-sign-in").addEventListener("click", () =>
  page.auth?.signInWithGoogle().catch((error) => showError(describe(error))),
);

$("password-sign-in").addEventListener("submit", (event) => {
  event.preventDefault();
  page.auth
    ?.signInWithPassword($("email").value, $("password").value)
    .catch((error) => showError(describe(error)));
});

$("sign-out").addEventListener("click", async () => {
  await page.auth.signOut();
  signedOut();
});

// ---- uploading ----------------------------------------------------------------------------

$("upload-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(null);
  const file = $("file").files[0];
  const bookId = $("book-id").value.trim();
  if (!file) {
    showError("Choose a PDF first");
    return;
  }
  localStorage.setItem(BOOK_KEY, bookId);
  showNotice(null);
  $("upload-button").disabled = true;
  $("upload-progress").value = 0;
  $("upload-progress").hidden = false;
  setText("upload-text", `Uploading ${file.name}`);
  try {
    const job = await page.api.createJob(bookId, file, (loaded, total) => {
      const percent = Math.floor((loaded / total) * 100);
      $("upload-progress").value = percent;
      setText("upload-text", `Uploading ${file.name}: ${percent}%`);
    });
    $("upload-progress").value = 100;
    setText("upload-text", `Uploaded ${file.name}`);
    remember(job.job_id, { book_id: bookId, filename: file.name });
    $("file").value = "";
    watchJob(job);
    refreshJobs();
  } catch (error) {
    setText("upload-text", "");
    showError(`Upload failed: ${describe(error)}`);
  } finally {
    $("upload-button").disabled = false;
  }
});

// ---- the job on screen --------------------------------------------------------------------

function stopWatching() {
  page.watch?.stop();
  page.live?.stop();
  page.watch = null;
  page.live = null;
  showStall(null);
}

function watchJob(job) {
  stopWatching();
  page.job = job;
  page.screen += 1;
  $("job").hidden = false;
  $("chapter").hidden = true;
  replace($("chapter-view"));
  $("live-pages").hidden = false;
  setText("job-name", recall(job.job_id)?.filename ?? `Job ${job.job_id}`);
  setText("connection", "");
  page.live = new LivePages(page.api, job.job_id, $("live-pages"));
  showState(job);
  if (TERMINAL.has(job.status)) return;
  const watch = new JobWatch(
    page.api,
    job.job_id,
    {
      onState: (state, via) => {
        page.job = state;
        showState(state);
        if (via === "poll") page.live?.refreshSoon();
        page.jobs?.update(state);
      },
      onPage: (event) => page.live?.notify(event),
      onConnection: (text) => setText("connection", text),
      onError: (message) => showError(message),
      onStall: (stalled, state) => showStall(stalled ? (state ?? page.job) : null),
    },
    { pollIntervalS: page.config.poll_interval_s, stallAfterS: page.stallAfterS },
  );
  page.watch = watch;
  watch.start();
}

/** Say why the count froze (no progress for a while), or take the note away (`job` null). */
function showStall(job) {
  let text = "";
  if (job) {
    const waiting =
      job.status === "pending"
        ? "waiting for a worker to start the job..."
        : "waiting for a worker to pick the job up again...";
    text = `No progress for ${page.stallAfterS} s: ${waiting}`;
  }
  $("stall").hidden = !text;
  setText("stall", text);
}

function showState(job) {
  setText("job-status", job.status);
  $("job-progress").value = job.progress;
  setText("job-percent", `${job.progress}%`);
  setText("job-message", job.status === "failed" && job.error ? job.error : job.message);
  $("cancel").hidden = TERMINAL.has(job.status);
  if (job.status === "completed" && job.result) {
    page.live?.stop();
    openChapter(job);
  } else if (job.status === "cancelled" || job.status === "failed") {
    // The service discarded the pages of a job that did not finish: so does the page.
    page.live?.clear();
    replace($("live-pages"));
    $("live-pages").hidden = true;
  }
}

async function openChapter(job) {
  const screen = page.screen;
  const known = recall(job.job_id);
  const bookId = known?.book_id ?? $("book-id").value.trim();
  try {
    const { view } = await chapterView(page.api, bookId, job.result.chapter_id, {
      onDelete: deleteChapter,
    });
    if (screen !== page.screen) return; // another job, or another user, is on screen now
    replace($("chapter-view"), view);
    $("live-pages").hidden = true;
    $("chapter").hidden = false;
  } catch (error) {
    if (screen !== page.screen) return;
    let hint = "";
    if (error instanceof ApiError && error.status === 404) {
      hint = known
        ? " (it was deleted)"
        : " (this browser did not create the job: enter its book above and open it again)";
    }
    showError(`Could not open the chapter: ${describe(error)}${hint}`);
  }
}

/** "Delete chapter" in the reader: the chapter, its pages' images and text; the job stays. */
async function deleteChapter(chapter, path) {
  const question =
    `Delete the chapter "${chapter.title}"?\n\n` +
    `Its ${chapter.total_pages} pages are deleted for good: their images and their text. ` +
    "The job stays in My jobs, and the uploaded PDF is kept.";
  if (!window.confirm(question)) return;
  showError(null);
  try {
    await page.api.delete(path);
  } catch (error) {
    showError(`Could not delete the chapter: ${describe(error)}`);
    return;
  }
  $("chapter").hidden = true;
  replace($("chapter-view"));
  showNotice(`Deleted the chapter "${chapter.title}".`);
}

function openJob(job) {
  showError(null);
  showNotice(null);
  watchJob(job);
  $("job").scrollIntoView({ block: "start" });
}

async function cancelJob(job) {
  showError(null);
  try {
    const { body } = await page.api.post(`${JOBS}/${encodeURIComponent(job.job_id)}/cancel`);
    if (page.job?.job_id === job.job_id) {
      stopWatching();
      page.job = body;
      showState(body);
      setText("connection", "");
    }
  } catch (error) {
    showError(`Could not cancel: ${describe(error)}`);
  }
  refreshJobs();
}

/** "Delete" in My jobs (a finished job): the job's record only; its chapter stays. */
async function deleteJob(job) {
  const name = recall(job.job_id)?.filename ?? `job ${job.job_id}`;
  const kept =
    job.status === "completed"
      ? "Its chapter stays (delete it from the chapter itself: Read, then Delete chapter)."
      : `It made no chapter: its pages were discarded when it was ${job.status}.`;
  const question =
    `Delete ${name} from My jobs?\n\n` +
    `Only the job's record is deleted. ${kept} The uploaded PDF is kept.`;
  if (!window.confirm(question)) return;
  showError(null);
  try {
    await page.api.delete(`${JOBS}/${encodeURIComponent(job.job_id)}`);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) {
      showError(`Could not delete the job: ${describe(error)}`);
      return;
    }
  }
  page.jobs?.drop(job.job_id);
  if (page.job?.job_id === job.job_id) {
    stopWatching();
    page.job = null;
    page.screen += 1;
    $("job").hidden = true;
  }
  showNotice(`Deleted ${name} from My jobs.`);
}

$("cancel").addEventListener("click", () => page.job && cancelJob(page.job));

/** Read the list again; resolves to its jobs (null when it was not shown, or failed). */
function refreshJobs() {
  const jobs = page.jobs;
  if (!jobs) return Promise.resolve(null);
  return jobs.load().catch((error) => {
    if (jobs === page.jobs) showError(`Could not list jobs: ${describe(error)}`);
    return null;
  });
}

$("refresh-jobs").addEventListener("click", () => refreshJobs());

start().catch((error) => {
  $("loading").hidden = true;
  showError(`Could not start: ${describe(error)}`);
});
