"""Results are data, pages are generated: the committed pages equal what `--write-docs` writes from results/, every run
file records its provenance, and every file a manifest names is there."""
import dataclasses
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from gan_jax import paper_tables, reproduce

ROOT = reproduce.ROOT
BEGIN, END = reproduce.README_BEGIN, reproduce.README_END


def _run_files() -> list[str]:
    return sorted(p for p in glob.glob(os.path.join(ROOT, "results", "*", "*.json"))
                  if os.path.basename(p) != reproduce.MANIFEST)


@pytest.fixture(scope="module")
def generated():
    return reproduce.render_docs(ROOT)


def test_committed_pages_equal_the_generated_ones(generated):
    pages, _ = generated
    committed = {os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "results", "*.md"))}
    assert committed | {"RESULTS.md"} == set(pages)
    for path, text in pages.items():
        with open(os.path.join(ROOT, path)) as f:
            assert f.read() == text, f"{path} is stale: python -m gan_jax.reproduce --write-docs regenerates it"


def test_readme_results_block_is_the_generated_one(generated):
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    if BEGIN not in readme and END not in readme:
        pytest.skip("README.md has no results markers")
    assert reproduce.readme_with_results(readme, generated[1]) == readme, (
        "README.md's results block is stale: python -m gan_jax.reproduce --write-docs regenerates it")


def test_summary_rows_are_computed_from_the_run_files(generated):
    pages, block = generated
    modes = [json.load(open(os.path.join(ROOT, "results", "mixture_ring", f"gan_seed{s}_400k.json")))
             ["results"]["GAN"][0]["modes"] for s in range(5)]
    mean, std = np.mean(modes), np.std(modes, ddof=1)
    # 5 seeds of 400k steps: |6 - 6.3| / sqrt(1.58**2 / 5 + 0.5**2) = 0.3 standard errors.
    assert (mean, round(std, 1)) == (6.0, 1.6)
    row = next(line for line in pages["RESULTS.md"].splitlines() if "[mixture_ring]" in line and "| GAN |" in line)
    assert row.startswith("| [mixture_ring](docs/results/mixture_ring.md) | GAN | modes / high_quality / reverse_kl "
                          "| 6 ± 1.6 / ") and "| modes yes (0.3), " in row and row.endswith("| 400000 × 5 (400000 × 10) |")
    assert row in block.splitlines()
    run = json.load(open(os.path.join(ROOT, "results", "stacked_mnist", "dcgan_seed0_2k.json")))
    [result] = run["results"]["DCGAN"]
    row = next(line for line in pages["RESULTS.md"].splitlines() if "[stacked_mnist]" in line and "| DCGAN |" in line)
    assert f"| {result['modes']:.0f} / {result['kl']:.3g} | 78.9 ± 6.5 / 4.5 ± 0.13 |" in row
    assert row.endswith(f"| {run['steps']} × 1 (100000 × 10) |")
    assert paper_tables.get_table("stacked_mnist").budget_note in pages["docs/results/stacked_mnist.md"]


def test_a_table_without_results_shows_its_reason_budget_and_the_papers_values():
    table = dataclasses.replace(paper_tables.get_table("stacked_mnist"), pending="its runs outlast this machine")
    page = reproduce.table_page(ROOT, table, None, [])
    assert "**Not produced yet:** its runs outlast this machine." in page and table.budget_note in page
    assert "| DCGAN | 78.9 ± 6.5 | 4.5 ± 0.13 |" in page.splitlines()
    [line] = [line for line in reproduce._summary_lines([(table, [])]) if "stacked_mnist" in line]
    assert "| not produced yet: its runs outlast this machine |" in line and table.budget_note in line


def test_every_run_file_records_its_provenance():
    for path in _run_files():
        with open(path) as f:
            run = json.load(f)
        name = os.path.relpath(path, ROOT)
        assert not [k for k in reproduce.PROVENANCE_KEYS if k not in run], name
        assert "seeds" in run or "method_seeds" in run, name
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", run["date"]), name
        assert run["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", run["commit"]), name
        assert {"arch", "cpu", "cpu_count", "device_kind", "device_count"} == set(run["machine"]), name
        if run["commit"] is None or run["command"] is None:
            assert run.get("provenance_note"), name
    assert not glob.glob(os.path.join(ROOT, "results", "20*")), "dated result folders are gone"


def test_every_manifest_entry_exists_and_each_table_has_results_or_a_reason():
    for table in paper_tables.TABLES.values():
        path = os.path.join(ROOT, "results", table.name, reproduce.MANIFEST)
        if not os.path.exists(path):
            assert table.pending, table.name
            continue
        assert not table.pending, table.name
        with open(path) as f:
            manifest = json.load(f)
        groups = manifest["headline"] + manifest.get("ablations", [])
        for name in [f for g in groups for f in g["files"]] + manifest.get("figures", []):
            assert os.path.exists(os.path.join(ROOT, "results", table.name, name)), (table.name, name)


def _checkout(tmp_path, readme: str) -> str:
    """A copy of the checkout's results/ and a README.md with the given text, under tmp_path."""
    shutil.copytree(os.path.join(ROOT, "results"), tmp_path / "results")
    (tmp_path / "README.md").write_text(readme)
    return str(tmp_path)


def test_write_docs_writes_the_pages_and_the_readme_block_and_refuses_a_readme_without_markers(tmp_path, generated):
    root = _checkout(tmp_path / "good", f"# gan_jax\n\nintro\n{BEGIN}\nan old table\n{END}\n\n## more\n")
    written = reproduce.write_docs(root)
    pages, block = generated
    assert written == sorted([*pages, "README.md"])
    for path, text in pages.items():
        assert (tmp_path / "good" / path).read_text() == text
    assert (tmp_path / "good" / "README.md").read_text() == f"# gan_jax\n\nintro\n{BEGIN}\n{block}\n{END}\n\n## more\n"
    root = _checkout(tmp_path / "bad", "# gan_jax\n")
    with pytest.raises(ValueError, match="README.md needs one <!-- results:begin --> line and, after it, one "
                                         "<!-- results:end --> line"):
        reproduce.write_docs(root)
    assert not (tmp_path / "bad" / "docs").exists() and not (tmp_path / "bad" / "RESULTS.md").exists()
    for text in (f"{END}\n{BEGIN}\n", f"{BEGIN}\n{BEGIN}\n{END}\n"):
        with pytest.raises(ValueError, match="README.md needs one"):
            reproduce.readme_with_results(text, block)


def test_manifests_that_name_missing_files_or_unknown_keys_are_refused(tmp_path):
    root = _checkout(tmp_path, "")
    manifest = tmp_path / "results" / "parzen_mnist" / reproduce.MANIFEST
    table = paper_tables.get_table("parzen_mnist")
    manifest.write_text(json.dumps({"headline": [{"files": ["gone.json"]}]}))
    with pytest.raises(ValueError, match="results/parzen_mnist/headline.json names \\['gone.json'\\], which are not in"):
        reproduce.load_manifest(root, table)
    manifest.write_text(json.dumps({"headline": [{"files": ["adversarial_nets_seed0_125k.json"], "seed": 1}]}))
    with pytest.raises(ValueError, match="unknown key\\(s\\) \\['seed'\\]; allowed: \\['title', 'files'"):
        reproduce.load_manifest(root, table)
    manifest.unlink()
    with pytest.raises(ValueError, match="results/parzen_mnist/headline.json is missing: add it, or give table "
                                         "'parzen_mnist' a `pending` reason"):
        reproduce.load_manifest(root, table)


def test_write_docs_command_takes_no_table_and_no_training_flags():
    for extra, message in ((["mixture_ring"], "takes no table, got ['mixture_ring']"),
                           (["--steps", "5", "--workdir", "/tmp/x"], "trains nothing; drop --workdir, --steps")):
        p = subprocess.run([sys.executable, "-m", "gan_jax.reproduce", "--write-docs", *extra], capture_output=True,
                           text=True, cwd=ROOT, timeout=300)
        assert p.returncode != 0 and message in p.stderr, p.stderr[-2000:]


def test_a_group_read_with_recomputed_batch_statistics_reports_those_numbers_and_says_so():
    table = paper_tables.get_table("mixture_ring")
    files = [f"pacgan2_simultaneous_pacganbn_seed{s}_400k.json" for s in range(4)]
    runs = [json.load(open(os.path.join(ROOT, "results", "mixture_ring", f))) for f in files]
    precise = reproduce.pool(ROOT, table, {"files": files, "evaluation": reproduce.PRECISE_BN_KEY})
    assert [r["reverse_kl"] for r in precise["results"]["PacGAN2"]] == [
        run[reproduce.PRECISE_BN_KEY]["PacGAN2"][0]["reverse_kl"] for run in runs]
    running = reproduce.pool(ROOT, table, {"files": files})
    assert running["results"]["PacGAN2"] != precise["results"]["PacGAN2"] and "curves" not in precise
    assert "recomputed at the evaluated parameters" in reproduce._run_facts(precise)
    assert "recomputed" not in reproduce._run_facts(running)
    with pytest.raises(ValueError, match="lack the precise_bn results"):
        reproduce.pool(ROOT, table, {"files": ["pacgan2_seed0_400k.json"], "evaluation": "precise_bn"})
    with pytest.raises(ValueError, match="unknown evaluation 'ema'.*allowed: \\['precise_bn'\\]"):
        reproduce.pool(ROOT, table, {"files": files, "evaluation": "ema"})
