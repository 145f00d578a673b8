"""flower_browser.py: look at Flower 2.2's pages with a real browser.

The Rust worker claims to be visible in Flower like a Python Celery worker.
The Rust tests prove it the way a person would: this script (run with the
venv's Python) drives Debian's Chromium, headless, through Playwright's sync
API, reads the pages' real DOM after Flower's JavaScript has filled it in, and
takes a screenshot. Playwright's own browser downloads are never used: the
browser is Debian's ``chromium`` (``scripts/services`` installs it).

Usage::

  flower_browser.py --flower http://127.0.0.1:5599 --worker NODENAME
                    [--task TASK_ID] [--state SUCCESS|FAILURE|REVOKED|...]
                    [--registered TASK_NAME]... [--queue QUEUE]...
                    [--revoke-task TASK_ID] [--terminate]
                    [--screenshot PATH] [--screenshot-page dashboard|worker|task]
                    [--timeout SECS]

Steps, each printing one line ``ok STEP: ...`` on stdout:

  dashboard  ``/``: Flower's workers table is a DataTable that polls
             ``/workers?json=1`` every second (no websocket). Waits until the
             row of --worker shows the "Online" badge that only that script
             renders (the server's first HTML says "True").
  worker     ``/worker/NODENAME``: the page exists (Flower answers 404 when
             the worker did not answer ``inspect stats``), has its tabs
             (Pool, Broker, Queues, Tasks, Limits, Config, System), and they
             hold real data: the pool's worker PID, the queues (--queue must
             be among them), the registered tasks, listed in the Limits tab
             (--registered must be among them).
  revoke     (--revoke-task) ``/task/ID``: Flower's only revoke control in
             the UI. Its task page shows "Revoke" while the task is RECEIVED
             or RETRY (e.g. a task with a countdown the worker holds) and
             "Terminate" while it is STARTED (clicked only with --terminate);
             the tasks list and the worker page have none. Clicks it and
             waits for Flower's "Revoked '<id>'" toast.
  task       (--task) ``/task/ID``: reloads (the page is static) until it
             exists and shows --state (default SUCCESS); checks the worker
             link names --worker and, for SUCCESS, that a runtime is shown.
  screenshot (--screenshot) a full-page PNG of --screenshot-page (default
             dashboard: the workers table with the worker Online and its
             task counters, the best picture for a README).

Every wait lasts at most --timeout seconds (default 30).

Chromium: $CHROMIUM if set, else /usr/bin/chromium, else ``chromium`` or
``chromium-browser`` on PATH. Launched with --no-sandbox (the tests run as
root).

Exit status: 0 all checks passed; 1 a check failed (one line on stderr, and
with --screenshot a picture of the failing page at PATH's stem + "-failed.png");
2 bad usage; 4 the browser is missing (stderr says "chromium not installed:
..."; the Rust tests skip on it).
"""
import argparse
import os
import shutil
import signal
import sys
import time
import urllib.parse

EXIT_FAIL, EXIT_USAGE, EXIT_NO_BROWSER = 1, 2, 4

WORKER_TABS = ('pool', 'broker', 'queues', 'tasks', 'limits', 'config', 'system')


class CheckFailed(Exception):
    """A step saw something wrong; the message is the reason."""


def die(message, code=EXIT_FAIL):
    """One line on stderr, then exit at once, whatever still runs."""
    print(f'flower_browser.py: {message}', file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def ok(step, message):
    print(f'ok {step}: {message}', flush=True)


def find_chromium():
    """Path of the browser executable, or exit 4 saying why there is none."""
    env = os.environ.get('CHROMIUM')
    if env:
        if os.path.isfile(env) and os.access(env, os.X_OK):
            return env
        die(f'chromium not installed: CHROMIUM={env} is not an executable file',
            EXIT_NO_BROWSER)
    if os.access('/usr/bin/chromium', os.X_OK):
        return '/usr/bin/chromium'
    for name in ('chromium', 'chromium-browser'):
        path = shutil.which(name)
        if path:
            return path
    die('chromium not installed: no /usr/bin/chromium, no chromium or '
        'chromium-browser on PATH (scripts/services installs it; or set CHROMIUM)',
        EXIT_NO_BROWSER)
    return None  # not reached


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog='flower_browser.py',
        description="Check Flower's pages for a worker with headless Chromium.")
    p.add_argument('--flower', required=True, help='base URL, e.g. http://127.0.0.1:5599')
    p.add_argument('--worker', required=True, help='node name, e.g. celery@host')
    p.add_argument('--task', help='task id whose page to check')
    p.add_argument('--state', default='SUCCESS', help='state --task must show (default SUCCESS)')
    p.add_argument('--registered', action='append', default=[],
                   help='task name the worker page must list (repeatable)')
    p.add_argument('--queue', action='append', default=[],
                   help='queue the worker page must list (repeatable)')
    p.add_argument('--revoke-task', help="revoke this task with its page's Revoke button")
    p.add_argument('--terminate', action='store_true',
                   help='with --revoke-task: press Terminate if the task is STARTED')
    p.add_argument('--screenshot', help='write a full-page PNG here')
    p.add_argument('--screenshot-page', choices=('dashboard', 'worker', 'task'),
                   default='dashboard')
    p.add_argument('--timeout', type=float, default=30.0, help='seconds per wait (default 30)')
    args = p.parse_args(argv)
    if args.screenshot_page == 'task' and args.screenshot and not args.task:
        p.error('--screenshot-page task needs --task')
    if args.timeout <= 0:
        p.error('--timeout must be positive')
    args.flower = args.flower.rstrip('/')
    return args


class Flower:
    """The browser on Flower's pages; each method is one step."""

    def __init__(self, page, args):
        self.page = page
        self.args = args
        self.timeout_ms = args.timeout * 1000
        self.page_errors = []
        page.on('pageerror', lambda exc: self.page_errors.append(str(exc)))

    def url(self, path):
        return self.args.flower + path

    def js_errors(self):
        if not self.page_errors:
            return ''
        return f' (page JavaScript error: {self.page_errors[-1][:200]})'

    def goto(self, path):
        """Open a page; returns the HTTP status (connection errors fail the step)."""
        from playwright.sync_api import Error as PlaywrightError
        try:
            response = self.page.goto(self.url(path), wait_until='load',
                                      timeout=self.timeout_ms)
        except PlaywrightError as exc:
            raise CheckFailed(f'cannot open {self.url(path)}: {first_line(exc)}') from None
        return response.status if response else 0

    # --- dashboard ---------------------------------------------------------
    def dashboard(self):
        from playwright.sync_api import TimeoutError as PlaywrightTimeout
        status = self.goto('/')
        if status != 200:
            raise CheckFailed(f'dashboard: GET / answered HTTP {status}')
        name = self.args.worker
        self.search_workers(name)
        # The row DataTables rendered from /workers?json=1: its first cell is
        # the worker link (text = the node name), its second the status badge.
        read_row = '''name => {
            for (const tr of document.querySelectorAll('#workers-table tbody tr')) {
                const cells = tr.querySelectorAll('td');
                if (cells.length < 2) continue;
                const link = cells[0].querySelector('a.worker-name-link');
                if (!link || link.textContent.trim() !== name) continue;
                return {status: cells[1].textContent.trim(),
                        // the load average is three spans: keep them apart
                        cells: Array.from(cells, c => {
                            const v = c.querySelectorAll('.load-average-value');
                            return v.length ? Array.from(v, x => x.textContent.trim()).join(' ')
                                            : c.textContent.trim();
                        })};
            }
            return null;
        }'''
        try:
            self.page.wait_for_function(
                f'name => {{ const r = ({read_row})(name); return r && r.status === "Online"; }}',
                arg=name, timeout=self.timeout_ms, polling=250)
        except PlaywrightTimeout:
            row = self.page.evaluate(read_row, name)
            if row is None:
                listed = self.page.evaluate(
                    '''() => Array.from(document.querySelectorAll(
                        '#workers-table tbody tr td:first-child a.worker-name-link'),
                        a => a.textContent.trim())''')
                raise CheckFailed(
                    f'dashboard: {name} not listed after {self.args.timeout:g} s '
                    f'(listed: {", ".join(listed) or "none"}){self.js_errors()}') from None
            raise CheckFailed(f'dashboard: {name} shows {row["status"]!r}, not Online, '
                              f'after {self.args.timeout:g} s') from None
        row = self.page.evaluate(read_row, name)
        online = self.page.text_content('#workers-online').strip()
        # columns: Worker, Status, Active, Processed, Failed, Succeeded, Load Average
        cells = row['cells'] + [''] * 7
        ok('dashboard', f'{name} Online (online workers: {online}; active {cells[2]}, '
                        f'processed {cells[3]}, failed {cells[4]}, succeeded {cells[5]}, '
                        f'load {cells[6] or "-"})')

    def search_workers(self, name):
        """Types the node name into the table's search box: the table shows
        15 workers a page, and on a busy broker ours may not be on the first."""
        box = self.page.locator('input[type="search"]').first
        box.wait_for(timeout=self.timeout_ms)
        box.fill(name)

    def dashboard_quiet(self):
        """For the screenshot: the dashboard again, once the row is Online."""
        status = self.goto('/')
        if status != 200:
            raise CheckFailed(f'screenshot: GET / answered HTTP {status}')
        self.search_workers(self.args.worker)
        self.page.wait_for_function(
            '''name => Array.from(document.querySelectorAll('#workers-table tbody tr'))
                 .some(tr => { const c = tr.querySelectorAll('td');
                               return c.length > 1 && c[0].textContent.trim() === name
                                   && c[1].textContent.trim() === 'Online'; })''',
            arg=self.args.worker, timeout=self.timeout_ms, polling=250)

    # --- worker page ---------------------------------------------------------
    def worker_path(self):
        return '/worker/' + urllib.parse.quote(self.args.worker, safe='')

    def open_worker(self):
        """The worker page, retried while Flower answers 404 (not inspected yet)."""
        deadline = time.monotonic() + self.args.timeout
        while True:
            status = self.goto(self.worker_path())
            if status == 200:
                return
            if time.monotonic() >= deadline:
                body = (self.page.text_content('body') or '').strip().splitlines()
                detail = ' '.join(line.strip() for line in body if line.strip())[:200]
                raise CheckFailed(f'worker page: GET {self.worker_path()} answered HTTP '
                                  f'{status}: {detail}')
            time.sleep(1)

    def show_tab(self, tab):
        """Click the tab as a person would; returns its pane's locator."""
        self.page.click(f'#worker-tab-{tab}', timeout=self.timeout_ms)
        pane = self.page.locator(f'#tab-{tab}')
        self.page.wait_for_selector(f'#tab-{tab}.active.show', state='visible',
                                    timeout=self.timeout_ms)
        return pane

    def column(self, selector):
        return [t.strip() for t in self.page.eval_on_selector_all(
            selector, 'cells => cells.map(c => c.textContent)')]

    def worker(self):
        name = self.args.worker
        self.open_worker()
        shown = (self.page.text_content('#workername') or '').strip()
        if shown != name:
            raise CheckFailed(f'worker page: heading says {shown!r}, not {name!r}')
        missing = [t for t in WORKER_TABS if self.page.query_selector(f'#worker-tab-{t}') is None]
        if missing:
            raise CheckFailed(f'worker page: no tab(s) {", ".join(missing)}')

        # Pool: the pool options and the worker's PID.
        self.show_tab('pool')
        pool = dict(zip(self.column('#tab-pool table tbody tr td:first-child'),
                        self.column('#tab-pool table tbody tr td:nth-child(2)')))
        pid = pool.get('Worker PID', '')
        if not pid.isdigit():
            raise CheckFailed(f'worker page: Pool tab shows no worker PID ({pid!r})')

        # Broker: the connection the worker reported.
        self.show_tab('broker')
        broker = dict(zip(self.column('#tab-broker table tbody tr td:first-child'),
                          self.column('#tab-broker table tbody tr td:nth-child(2)')))
        if not broker:
            raise CheckFailed('worker page: Broker tab is empty')

        # Queues: the active queues (inspect active_queues).
        self.show_tab('queues')
        queues = self.column('#worker-queues tr td:first-child')
        if not queues:
            raise CheckFailed('worker page: Queues tab lists no queue')
        absent = [q for q in self.args.queue if q not in queues]
        if absent:
            raise CheckFailed(f'worker page: Queues tab lacks {", ".join(absent)} '
                              f'(shows {", ".join(queues)})')

        # Tasks: the processed counters (inspect stats "total").
        self.show_tab('tasks')
        totals = dict(zip(self.column('#tab-tasks table:first-of-type tbody tr td:first-child'),
                          self.column('#tab-tasks table:first-of-type tbody tr td:nth-child(2)')))

        # Limits: one row per registered task (inspect registered).
        self.show_tab('limits')
        registered = self.column('#limits-table tr td:first-child')
        if not registered:
            raise CheckFailed('worker page: Limits tab lists no registered task')
        absent = [t for t in self.args.registered if t not in registered]
        if absent:
            raise CheckFailed(f'worker page: registered tasks lack {", ".join(absent)} '
                              f'(shows {", ".join(registered)})')

        # Config and System: present; their rows are reported, not required.
        self.show_tab('config')
        conf_rows = len(self.column('#tab-config table tbody tr td:first-child'))
        self.show_tab('system')
        rusage_rows = len(self.column('#tab-system table tbody tr td:first-child'))
        self.show_tab('pool')

        # stats.total as last inspected: Flower may show a cached, older one
        processed = ', '.join(f'{k} {v}' for k, v in totals.items()) or 'none yet'
        ok('worker', f'{name} tabs {"/".join(WORKER_TABS)}; pid {pid}; '
                     f'transport {broker.get("Transport", "?")}; '
                     f'queues {", ".join(queues)}; registered {len(registered)} '
                     f'({", ".join(registered)}); processed {processed}; '
                     f'config {conf_rows} rows; system {rusage_rows} rows')

    # --- task page -----------------------------------------------------------
    def task_fields(self):
        """The task page's definition list as {label: text}."""
        return self.page.evaluate('''() => {
            const out = {};
            for (const row of document.querySelectorAll('#task-page .detail-list .detail-row')) {
                const dt = row.querySelector('dt'), dd = row.querySelector('dd');
                if (dt && dd) out[dt.textContent.trim()] = dd.textContent.trim();
            }
            return out;
        }''')

    def open_task(self, task_id, want, step):
        """Reload /task/ID until want(fields) is true; returns the fields.

        Flower's task page is rendered once by the server and never updates
        itself, and answers 404 until the first event of the task arrived.
        """
        path = '/task/' + urllib.parse.quote(task_id, safe='')
        deadline = time.monotonic() + self.args.timeout
        fields, status = {}, 0
        while True:
            status = self.goto(path)
            if status == 200:
                fields = self.task_fields()
                if want(fields):
                    return fields
            if time.monotonic() >= deadline:
                if status != 200:
                    raise CheckFailed(f'{step}: GET {path} answered HTTP {status} '
                                      f'for {self.args.timeout:g} s (Flower never saw the task)')
                raise CheckFailed(f'{step}: task {task_id} shows state '
                                  f'{fields.get("Status")!r} after {self.args.timeout:g} s')
            time.sleep(1)

    def task(self):
        task_id, state = self.args.task, self.args.state.upper()
        fields = self.open_task(task_id, lambda f: f.get('Status') == state, 'task')
        uuid = fields.get('UUID', '')
        if task_id not in uuid:
            raise CheckFailed(f'task: page shows UUID {uuid!r}')
        worker = fields.get('Worker')
        if worker is not None and worker != self.args.worker:
            raise CheckFailed(f'task: ran on {worker!r}, not {self.args.worker!r}')
        parts = [f'{task_id} {fields.get("Name", "?")} {state}']
        if worker:
            parts.append(f'worker {worker}')
        if state == 'SUCCESS':
            runtime = fields.get('Runtime', '')
            if not runtime:
                raise CheckFailed(f'task: {task_id} is SUCCESS but no runtime is shown')
            parts.append(f'runtime {runtime}')
            parts.append(f'result {fields.get("Result", "")}')
        elif state == 'FAILURE':
            parts.append(f'exception {fields.get("Exception", "")}')
        ok('task', '; '.join(parts))

    def revoke(self):
        task_id = self.args.revoke_task
        buttons = '#task-revoke, #task-terminate' if self.args.terminate else '#task-revoke'

        def has_button(fields):
            return self.page.query_selector(buttons) is not None or \
                fields.get('Status') in ('REVOKED', 'SUCCESS', 'FAILURE')
        fields = self.open_task(task_id, has_button, 'revoke')
        button = self.page.query_selector(buttons)
        if button is None:
            state = fields.get('Status')
            hint = (' (STARTED: only "Terminate" is offered; pass --terminate)'
                    if state == 'STARTED' else
                    ' (Flower offers Revoke only while a task is RECEIVED or RETRY)')
            raise CheckFailed(f'revoke: task {task_id} is {state}, its page has no Revoke '
                              f'button{hint}')
        label = button.text_content().strip()
        state = fields.get('Status')
        button.click(timeout=self.timeout_ms)
        toast = self.page.locator('#toast-container .toast-body').first
        try:
            toast.wait_for(state='attached', timeout=self.timeout_ms)
        except Exception:
            raise CheckFailed(f'revoke: no answer shown after pressing {label}'
                              f'{self.js_errors()}') from None
        text = toast.text_content().strip()
        toast_class = self.page.locator('#toast-container .toast').first.get_attribute('class') or ''
        if 'text-bg-success' not in toast_class or task_id not in text:
            raise CheckFailed(f'revoke: Flower answered {text!r}')
        ok('revoke', f'{task_id} was {state}; pressed {label}; Flower said {text!r}')

    # --- screenshot ------------------------------------------------------------
    def screenshot(self):
        which, path = self.args.screenshot_page, self.args.screenshot
        if which == 'dashboard':
            self.dashboard_quiet()
        elif which == 'worker':
            self.open_worker()
        else:
            self.open_task(self.args.task, lambda f: 'Status' in f, 'screenshot')
        # Let the last layout settle (DataTables sizes its columns after a draw).
        self.page.wait_for_timeout(500)
        self.page.screenshot(path=path, full_page=True, timeout=self.timeout_ms)
        ok('screenshot', f'{path} ({which}, {os.path.getsize(path)} bytes)')

    def failure_screenshot(self):
        """A picture of where it failed, next to --screenshot; '' when none."""
        if not self.args.screenshot:
            return ''
        stem, _ = os.path.splitext(self.args.screenshot)
        path = stem + '-failed.png'
        try:
            self.page.screenshot(path=path, full_page=True, timeout=5000)
        except Exception:  # the page or browser may be what broke
            return ''
        return f' [screenshot: {path}]'


def first_line(exc):
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def main(argv):
    args = parse_args(argv)
    chromium = find_chromium()
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        die(f'playwright is not installed in this Python ({exc}); run scripts/python-env')

    # A last resort against anything that hangs: every step has its own
    # timeout, so this fires only if the browser or driver stops answering.
    # Exiting closes the driver's pipe, and the driver then kills the browser.
    steps = 4 + bool(args.revoke_task) + bool(args.task)
    budget = int(args.timeout * steps) + 30

    def on_alarm(_signum, _frame):
        die(f'gave up after {budget} s in all (browser not answering?)')
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(budget)

    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(
                executable_path=chromium, headless=True,
                args=['--no-sandbox', '--disable-dev-shm-usage'],
                timeout=args.timeout * 1000)
        except PlaywrightError as exc:
            die(f'chromium at {chromium} did not start: {first_line(exc)}')
        ok('chromium', f'{chromium} {browser.version}')
        flower = None
        try:
            page = browser.new_page(viewport={'width': 1280, 'height': 800})
            page.set_default_timeout(args.timeout * 1000)
            flower = Flower(page, args)
            flower.dashboard()
            flower.worker()
            if args.revoke_task:
                flower.revoke()
            if args.task:
                flower.task()
            if args.screenshot:
                flower.screenshot()
        except CheckFailed as exc:
            die(f'{exc}{flower.failure_screenshot() if flower else ""}')
        except PlaywrightError as exc:
            die(f'browser: {first_line(exc)}'
                f'{flower.failure_screenshot() if flower else ""}')
        finally:
            signal.alarm(0)
        browser.close()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
