"""What the Prefect UI shows of the package's runs, read off the DOM in headless Chromium, in both
of Prefect 3.9's UIs (V2 at /v2, the default for a browser with no saved choice; V1 at /).

After a VQE flow (flows/vqe_h2.py), the hybrid-job flow (flows/hybrid_job_flow.py) and a flow
whose job raises, against a real server (conftest.py): each artifact key is one card in its run's
Artifacts tab, the VQE summary's convergence plot (a data-URI SVG image) loads with its axis titles
and legend, and the failed job's traceback shows once in its run's logs. With
PREFECT_BRAKET_SCREENSHOTS=<directory> (`docs` for the README's pictures) the V2 pages are saved
there as PNG; CI does not set it, so it never rewrites tracked files."""

import asyncio
import base64
import os
import re
import sys
import xml.etree.ElementTree as ElementTree
from collections import Counter
from dataclasses import dataclass

import pytest
from prefect import flow
from prefect.settings import PREFECT_API_URL, temporary_settings

from helpers.paths import FLOWS, REPO
from helpers.reports import REPORTS
from prefect_braket import HybridJob, LocalEngine, hybrid_job
from prefect_braket.core.states import TERMINAL_STATES
from prefect_braket.orchestration.context import artifact_key

sys.path.insert(0, str(FLOWS))

from hybrid_job_flow import hybrid_job_flow  # noqa: E402
from vqe_h2 import H2_HAMILTONIAN, vqe_h2  # noqa: E402

UIS = {"v2": "/v2", "v1": ""}  # where each UI's pages are, under the server's URL
EXPERIMENT = "ui-vqe-h2"
REASON = "the rotor seized at iteration 3"
SVG = "{http://www.w3.org/2000/svg}"
FOUND: dict[str, dict] = {}  # what each check read off the page, per UI: printed after the run


@hybrid_job(device="local:braket/braket_sv")
def seized_rotor():
    """A job that fails as user code does: it raises."""
    raise ValueError(REASON)


@dataclass
class Runs:
    vqe: str  # flow run ids
    job: str
    failed: str
    vqe_keys: list[str]
    job_keys: list[str]
    reference: float  # the exact energy the VQE plot draws as its reference line
    outermost_frame: str  # of the failed job's traceback, as its log has it


def drain_prefect_workers():
    """Sends the logs and events queued in this process, and stops their workers, so the next flow
    starts workers bound to the API it is pointed at (the events worker is not keyed by its URL)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all()
    EventsWorker.drain_all()


@pytest.fixture(scope="module")
def runs(ui_server, tmp_path_factory):
    """The flows, run once against the UI's server, each to its end (logs and events sent)."""
    home = tmp_path_factory.mktemp("engine")
    submitted: list[HybridJob] = []

    @flow(name="braket-hybrid-job-that-fails")
    def failing_job_flow() -> dict:
        job = seized_rotor()
        submitted.append(job)
        return job.result(poll_interval_seconds=0.2)

    with pytest.MonkeyPatch.context() as patch, temporary_settings({PREFECT_API_URL: f"{ui_server}/api"}):
        patch.setenv("PREFECT_BRAKET_HOME", str(home))
        drain_prefect_workers()
        try:
            vqe = asyncio.run(vqe_h2(experiment_id=EXPERIMENT, return_state=True))
            job = hybrid_job_flow(num_tasks=3, return_state=True)
            failed = failing_job_flow(return_state=True)
            assert vqe.is_completed() and job.is_completed() and failed.is_failed(), (vqe, job, failed)
            job_key = artifact_key(HybridJob.attach(job.result()["job_arn"]).name)
            log = submitted[0].log_lines()
        finally:
            drain_prefect_workers()
            engine = LocalEngine(home)
            for index in (home / "arns").glob("*") if (home / "arns").exists() else []:
                if engine.get_job("local:job/" + index.name)["status"] not in TERMINAL_STATES:
                    engine.cancel_job("local:job/" + index.name)
    traceback = log.index("Traceback (most recent call last):")
    yield Runs(vqe=str(vqe.state_details.flow_run_id), job=str(job.state_details.flow_run_id),
               failed=str(failed.state_details.flow_run_id),
               vqe_keys=[f"{EXPERIMENT}-{part}" for part in ("progress", "iterations", "summary")],
               job_keys=[f"{job_key}-{part}" for part in ("progress", "metrics", "summary")],
               reference=H2_HAMILTONIAN.exact_ground_energy(), outermost_frame=log[traceback + 1].strip())
    for ui, found in FOUND.items():
        REPORTS.append((f"Prefect UI {ui}: what the DOM showed", found))


@pytest.fixture(params=list(UIS))
def ui(request):
    return request.param


@pytest.fixture
def page(browser, ui_server, ui):
    """A page in a new browser context that has chosen `ui` (the UI's own cookie). Requests for
    anything but the server are refused, and the test fails if the UI asked another local address
    for anything (as the V2 UI asks 127.0.0.1:4200 without PREFECT_UI_API_URL)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_cookies([{"name": "prefect_ui_version", "value": ui, "url": ui_server}])
    refused: list[str] = []

    def refuse(route):
        refused.append(route.request.url)
        route.abort()

    context.route(lambda url: not url.startswith(f"{ui_server}/"), refuse)
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()
    elsewhere_here = [url for url in refused if re.match(r"https?://(127\.|localhost|\[::1\])", url)]
    assert not elsewhere_here, f"the UI called local addresses other than its server: {elsewhere_here}"


def open_run(page, base: str, ui: str, run_id: str, tab: str):
    """A flow run's page at one of its tabs, clicked as a user does (V1 drops `?tab=` for a run it
    has not loaded yet); returns the tab's panel."""
    page.goto(f"{base}{UIS[ui]}/runs/flow-run/{run_id}")
    page.get_by_role("tablist").get_by_text(tab, exact=True).click()  # V1's tabs have no role of their own
    return page.get_by_role("tabpanel")


def artifact_cards(panel, keys: list[str]) -> Counter:
    """The cards in a run's Artifacts tab, counted by the artifact key each names (None: no key of
    `keys`), once every key of `keys` has a card."""
    for key in keys:
        panel.get_by_text(key, exact=True).first.wait_for()
    texts = panel.locator("a[href*='/artifacts/artifact/']").all_inner_texts()
    return Counter(next((key for key in keys if key in text.split("\n")), None) for text in texts)


def save_screenshot(page, name: str, height: int = 800):
    """The page, 1280 wide and `height` high, as `name` in $PREFECT_BRAKET_SCREENSHOTS (if set),
    once nothing on it is still loading (no placeholder left)."""
    directory = os.environ.get("PREFECT_BRAKET_SCREENSHOTS")
    if not directory:
        return
    size = page.viewport_size
    page.set_viewport_size({"width": 1280, "height": height})
    page.wait_for_function("() => !document.querySelector('.animate-pulse')")
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
    path = REPO / directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    page.set_viewport_size(size)


def test_a_browser_with_no_saved_choice_opens_the_v2_ui_and_v1_is_one_click_away(browser, ui_server, runs):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.route(lambda url: not url.startswith(f"{ui_server}/"), lambda route: route.abort())
    page = context.new_page()
    try:
        page.goto(f"{ui_server}/")
        page.get_by_text("Switch to V1 UI").wait_for()
        assert page.url.startswith(f"{ui_server}/v2/"), page.url
        page.goto(f"{ui_server}/v2/runs/flow-run/{runs.vqe}")
        page.get_by_text("Switch to V1 UI").click()
        page.get_by_role("button", name="Skip feedback and switch").click()  # V2 asks why, optionally
        page.get_by_text("Switch to V2 UI").wait_for()
        assert page.url.startswith(f"{ui_server}/runs/flow-run/{runs.vqe}"), page.url  # the same run, in V1
        assert {c["name"]: c["value"] for c in context.cookies()}["prefect_ui_version"] == "v1"
    finally:
        context.close()


def test_each_artifact_key_is_one_card_in_its_runs_artifacts_tab(page, ui_server, ui, runs):
    # V1 draws the cards of task runs' artifacts only once they are in view: a tall window has them all.
    page.set_viewport_size({"width": 1280, "height": 1600})
    vqe = artifact_cards(open_run(page, ui_server, ui, runs.vqe, "Artifacts"), runs.vqe_keys)
    if ui == "v2":
        save_screenshot(page, "ui-flow-run.png", height=900)  # the run's header, its graph and the cards
    job = artifact_cards(open_run(page, ui_server, ui, runs.job, "Artifacts"), runs.job_keys)
    FOUND.setdefault(ui, {}).update(vqe_cards=dict(vqe), job_cards=dict(job))
    assert vqe == Counter(runs.vqe_keys)
    assert job == Counter(runs.job_keys)


def test_the_vqe_summary_plot_loads_with_its_axis_titles_and_legend(page, ui_server, ui, runs):
    panel = open_run(page, ui_server, ui, runs.vqe, "Artifacts")
    panel.locator("a[href*='/artifacts/artifact/']", has_text=f"{EXPERIMENT}-summary").click()
    page.wait_for_url("**/artifacts/artifact/**")
    plot = page.locator("img[alt=convergence]")
    plot.wait_for()
    page.wait_for_function("image => image.complete && image.naturalWidth > 0", arg=plot.element_handle())
    size = plot.evaluate("image => [image.naturalWidth, image.naturalHeight]")
    source = plot.get_attribute("src")
    prefix = "data:image/svg+xml;base64,"
    assert source.startswith(prefix), source[:80]
    svg = ElementTree.fromstring(base64.b64decode(source[len(prefix):]))
    labels = [text.text for text in svg.iter(f"{SVG}text")]
    FOUND.setdefault(ui, {}).update(plot_natural_size=size, plot_labels=labels)
    if ui == "v2":
        save_screenshot(page, "ui-vqe-summary.png")
    assert size == [520, 240]
    assert "iteration" in labels  # the x axis's title
    assert labels.count("energy") == 2  # the y axis's title and the energy line's legend
    assert f"reference {runs.reference:.6f}" in labels  # the reference line's legend


def test_a_failed_jobs_run_shows_the_failure_once(page, ui_server, ui, runs):
    # Both UIs draw only the log rows in view: a tall window has them all (the first and last are checked).
    page.set_viewport_size({"width": 1280, "height": 4000})
    panel = open_run(page, ui_server, ui, runs.failed, "Logs")
    panel.get_by_text("Beginning flow run").wait_for()
    panel.get_by_text(re.compile(r"^Finished in state Failed\('Flow run encountered an exception")).wait_for()
    logs = panel.inner_text()
    assert page.get_by_text("Failed", exact=True).first.is_visible()  # the run's state badge
    found = {"reason": logs.count(REASON), "job_traceback_outermost_frame": logs.count(runs.outermost_frame),
             "tracebacks": logs.count("Traceback (most recent call last)")}
    FOUND.setdefault(ui, {}).update(failed_run_logs=found)
    assert REASON in logs
    # The job's traceback once, as its log forwarded it: the error that fails the run names where
    # it was raised and where the whole log is, without repeating the log.
    assert found["job_traceback_outermost_frame"] == 1, found

