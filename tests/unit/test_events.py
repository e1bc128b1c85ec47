import pytest

from selfheal_core.events import DetailType, InvalidEvent, IssueReportedV1, Metadata, build_detail, parse_detail


def _issue(**overrides):
    base = {"service": "checkout", "issue_type": "latency", "severity": "high", "summary": "p95 is 4 s"}
    return {**base, **overrides}


def test_envelope_round_trip_keeps_metadata_and_data():
    meta = Metadata(incident_id="inc-1", correlation_id="corr-1", producer="manager", attempt=2)
    detail = build_detail(meta, IssueReportedV1.model_validate(_issue()))

    envelope = parse_detail(DetailType.ISSUE_REPORTED.value, detail)

    assert envelope.metadata.attempt == 2
    assert envelope.data.service == "checkout"
    assert envelope.data.issue_type == "latency"


def test_unknown_version_is_rejected_with_the_supported_ones():
    detail = {
        "metadata": {"incident_id": "i", "correlation_id": "c", "producer": "x", "event_version": "9"},
        "data": _issue(),
    }

    with pytest.raises(InvalidEvent, match=r"unsupported event_version '9'.*supported: \['1'\]"):
        parse_detail("IssueReported", detail)


def test_unknown_detail_type_is_rejected():
    with pytest.raises(InvalidEvent, match="unknown detail-type"):
        parse_detail("SomethingElse", {"metadata": {}, "data": {}})


def test_invalid_data_names_the_field():
    detail = {
        "metadata": {"incident_id": "i", "correlation_id": "c", "producer": "x"},
        "data": _issue(issue_type="gremlins"),
    }

    with pytest.raises(InvalidEvent, match="issue_type"):
        parse_detail("IssueReported", detail)


@pytest.mark.parametrize(
    "path",
    [
        "../etc/passwd",
        "/etc/passwd",
        "",
        "conftest.py/",
        "conftest.py/.",
        "./conftest.py",
        "a//b.py",
        "n\x00.py",
        # a newline would become a file header of its own in the patch a person applies
        "src/ok.py\n--- /dev/null\n+++ b/conftest.py",
        "tab\tname.py",
        " conftest.py",
        "C:/x.py",
    ],
)
def test_code_paths_must_stay_inside_the_project_in_their_one_spelling(path):
    """A second spelling of a file (`conftest.py/`) would pass checks by name and be written as the file."""
    with pytest.raises(ValueError, match="relative"):
        IssueReportedV1.model_validate(_issue(code={"files": {path: "x"}}))


def test_a_colon_is_a_legitimate_posix_file_name_character():
    IssueReportedV1.model_validate(_issue(code={"files": {"notes/2024:q1.md": "x", "2024:notes.md": "y"}}))


def test_a_project_of_more_files_than_the_runner_takes_is_refused_at_the_edge():
    with pytest.raises(ValueError, match="files"):
        IssueReportedV1.model_validate(_issue(code={"files": {f"m{i}.py": "" for i in range(1_001)}}))
