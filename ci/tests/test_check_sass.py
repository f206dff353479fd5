"""ci/check_sass.py's rules on hand-written SASS: each finding it must raise, and none on a clean kernel."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import check_sass  # noqa: E402

CLEAN = [("ULDC.64", "UR4, c[0x0][0x208]"), ("LDGSTS.E.BYPASS.128", "[R45], desc[UR4][R40.64], P0"),
         ("LDSM.16.M88.4", "R8, [R2]"), ("HMMA.16816.F32", "R12, R8, R20, R12")]


def test_clean_gemm_kernel_has_no_findings():
    assert check_sass.check_kernel("sm_80", "marlin_gemm_kernel", CLEAN) == []


def test_descriptor_read_before_any_write_is_the_cp_async_miscompile():
    body = [("LDGSTS.E.BYPASS.LTC128B.128", "[R7], desc[UR6][R2.64]")] + CLEAN
    findings = check_sass.check_kernel("sm_80", "k", body)
    assert len(findings) == 1 and "UR6" in findings[0] and "miscompile" in findings[0]


def test_the_high_half_of_a_64_bit_uniform_load_counts_as_written():
    body = [("ULDC.64", "UR4, c[0x0][0x208]"), ("STG.E.128", "desc[UR5][R4.64], R8")]
    assert check_sass.check_kernel("sm_80", "k", body) == []


def test_local_memory_is_a_finding():
    assert any("LDL" in f for f in check_sass.check_kernel("sm_80", "k", CLEAN + [("LDL.64", "R2, [R1+0x8]")]))


def test_gemm_without_tensor_cores_is_a_finding():
    body = [ins for ins in CLEAN if not ins[0].startswith("HMMA")]
    assert check_sass.check_kernel("sm_90a", "qh::marlin_gemm_kernel<half>", body) == [
        "sm_90a qh::marlin_gemm_kernel<half>: expected HMMA instructions, found none"]


WGMMA = [("UTMALDG.2D", "[UR8], [UR4], desc[UR6]"), ("UBLKCP.S.G", "[UR10], [UR12], UR14"),
         ("HGMMA.64x64x16.F32", "R24, gdesc[UR8], R24")]


def test_hopper_gemm_needs_hgmma_on_sm_90a_only():
    assert check_sass.check_kernel("sm_90a", "qh::marlin_gemm_wgmma_kernel<half>", WGMMA) == []
    mma_only = [ins for ins in WGMMA if not ins[0].startswith("HGMMA")] + [("HMMA.16816.F32", "R12, R8, R20, R12")]
    assert check_sass.check_kernel("sm_90a", "qh::marlin_gemm_wgmma_kernel<half>", mma_only) == [
        "sm_90a qh::marlin_gemm_wgmma_kernel<half>: expected HGMMA instructions, found none"]
    no_tma = [ins for ins in WGMMA if not ins[0].startswith("UTMALDG")]
    assert check_sass.check_kernel("sm_90a", "qh::marlin_gemm_wgmma_kernel<half>", no_tma) == [
        "sm_90a qh::marlin_gemm_wgmma_kernel<half>: expected UTMALDG instructions, found none"]
    # elsewhere it is a trap: nothing is required of it
    assert check_sass.check_kernel("sm_80", "qh::marlin_gemm_wgmma_kernel<half>", [("BPT.TRAP", "0x1")]) == []


TMA_MMA = [("UTMALDG.2D", "[UR8], [UR4], desc[UR6]"), ("UBLKCP.S.G", "[UR10], [UR12], UR14"),
           ("LDSM.16.M88.4", "R8, [R2]"), ("HMMA.16816.F32", "R12, R8, R20, R12")]


def test_tma_fed_mma_sync_tiles_need_the_bulk_copies_on_sm_90a_only():
    assert check_sass.check_kernel("sm_90a", "qh::marlin_gemm_tma_kernel<half>", TMA_MMA) == []
    cp_async = [ins for ins in TMA_MMA if not ins[0].startswith("UBLKCP")]
    assert check_sass.check_kernel("sm_90a", "qh::marlin_gemm_tma_kernel<half>", cp_async) == [
        "sm_90a qh::marlin_gemm_tma_kernel<half>: expected UBLKCP instructions, found none"]
    assert check_sass.check_kernel("sm_80", "qh::marlin_gemm_tma_kernel<half>", [("BPT.TRAP", "0x1")]) == []
