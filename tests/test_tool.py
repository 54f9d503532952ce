"""The arcpy-style tool: ManageMapServerCacheStatus with arcpy's names and result."""

from __future__ import annotations

import pytest

import cachestatus
from cachestatus.errors import CacheNotFound, InvalidAOI, UsageError
from cachestatus.tool import SUCCEEDED


def test_rebuild_by_keyword_pro_order(sample):
    result = cachestatus.ManageMapServerCacheStatus(
        input_service=str(sample),
        manage_mode="REBUILD_CACHE_STATUS",
        num_of_caching_service_instances=1,
    )
    assert result.status == SUCCEEDED == 4
    assert result.getOutput(0) == str(sample / "Status.gdb")
    messages = result.getMessages()
    assert "Level 2 (1:147,914,382): 16 of 16 tiles, 100.00%, 1 bundles" in messages
    assert messages.splitlines()[-1].startswith("Succeeded")
    assert result.report is not None and result.report.totals.tiles_present == 21


def test_rebuild_positional_10x_order_and_arcpy_placeholders(sample):
    # arcpy scripts pass "#" for skipped optional parameters.
    result = cachestatus.ManageMapServerCacheStatus(
        str(sample), "rebuild_cache_status", "#", "-1", "#", "#", "#"
    )
    assert result.status == 4 and (sample / "Status.gdb").exists()


def test_delete_and_nothing_to_delete(sample):
    cachestatus.ManageMapServerCacheStatus(
        str(sample), "REBUILD_CACHE_STATUS", num_of_caching_service_instances=1
    )
    result = cachestatus.ManageMapServerCacheStatus(
        manage_mode="DELETE_CACHE_STATUS", input_service=str(sample)
    )
    assert result.status == 4 and result.getOutput(0).endswith("Status.gdb")
    assert not (sample / "Status.gdb").exists()
    again = cachestatus.ManageMapServerCacheStatus(str(sample), "DELETE_CACHE_STATUS")
    assert again.status == 4 and "No cache status to delete" in again.getMessages()


def test_report_mode_needs_a_report_folder(sample):
    with pytest.raises(UsageError, match="REPORT_BUNDLE_STATUS needs report_folder"):
        cachestatus.ManageMapServerCacheStatus(
            str(sample), "REPORT_BUNDLE_STATUS", scales=[591657527.591555]
        )


def test_report_only_parameters_are_flagged_in_rebuild(sample):
    result = cachestatus.ManageMapServerCacheStatus(
        str(sample),
        "REBUILD_CACHE_STATUS",
        scales="591657527.591555",
        num_of_caching_service_instances=1,
    )
    assert "WARNING: scales is used by REPORT_BUNDLE_STATUS only; ignored" in result.getMessages()


def test_bad_input_raises_like_arcpy(tmp_path):
    with pytest.raises(UsageError, match="manage_mode='FIX_IT': use one of DELETE_CACHE_STATUS"):
        cachestatus.ManageMapServerCacheStatus(str(tmp_path), "FIX_IT")
    with pytest.raises(CacheNotFound):
        cachestatus.ManageMapServerCacheStatus(str(tmp_path / "none"), "REBUILD_CACHE_STATUS")
    with pytest.raises(UsageError, match="num_of_caching_service_instances='many'"):
        cachestatus.ManageMapServerCacheStatus(
            str(tmp_path), "REBUILD_CACHE_STATUS", num_of_caching_service_instances="many"
        )


def test_errors_have_one_root_and_builtin_bases():
    assert issubclass(CacheNotFound, cachestatus.CacheStatusError)
    assert issubclass(CacheNotFound, FileNotFoundError)
    assert issubclass(InvalidAOI, ValueError)
