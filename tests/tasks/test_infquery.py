"""The InfQuery pipeline: lexical accuracy above chance, steps chained, the examples schedule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.tasks.conftest import NO_TORCH

torch = pytest.importorskip("torch", reason=NO_TORCH)
pytest.importorskip("torchaudio", reason=NO_TORCH)

from jobdb.spec import expand, load_spec  # noqa: E402
from tasks import corpus, features, infquery, kmeans, lm, modelroot  # noqa: E402
from tasks.training import TrainConfig  # noqa: E402
from tests.tasks.conftest import MakeContext  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_lexical_accuracy_is_above_chance_on_an_easy_corpus() -> None:
    # Two voices, no noise, 20 words: units → LSTM → word beats its reordered non-word.
    lang = corpus.make_language("en", seed=0, n_words=20)
    voices = corpus.make_speakers(0, 2, "easy")
    cfg = features.FeatureConfig()
    train = features.extract([c.audio for c in corpus.sentences(lang, 150, 0, voices, None)], cfg)
    items = corpus.lexical_items(lang, 0, voices)
    km = kmeans.fit_kmeans(torch.cat(train), 12, seed=0)
    lm_cfg = lm.LMConfig(12)
    seqs = [lm.dedup(km.assign(f).tolist(), lm_cfg.min_run) for f in train]
    model, fit = lm.train_lm(seqs, lm_cfg, TrainConfig(steps=150, batch_size=16, lr=1e-2))
    assert fit.final_loss < 0.5 * fit.losses[0]
    test = [
        lm.dedup(km.assign(f).tolist(), lm_cfg.min_run)
        for f in features.extract([c.audio for c in items], cfg)
    ]
    scores = lm.log_probs(model, test)
    accuracy = np.mean([scores[2 * i] > scores[2 * i + 1] for i in range(len(items) // 2)])
    assert accuracy >= 0.75  # chance is 0.5; measured 1.0


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("infquery")
    cfg = modelroot.BuildConfig(scale=0.2, n_words=8, lm_steps=20, train_voices=3, eval_voices=2)
    summary = modelroot.build(root, {"en": ["baby50", "baby100"]}, cfg)
    assert summary["en/baby100"]["sentences"] == 20 and summary["en/baby50"]["sentences"] == 10
    return root


def test_the_steps_chain_through_their_results(tree: Path, make_ctx: MakeContext) -> None:
    params = {
        "lang": "en",
        "model": "baby100",
        "model_root": str(tree / "models"),
        "input": {
            "audio": {"ext": ".wav", "method": "glob", "root_dir": "data/wav"},
            "lexical": {"csv": "gold.csv"},
        },
        "quantize_options": {"batch_size": 4, "max_size_seq": 10200},
    }
    q = infquery.quantize(params, make_ctx("quantize"))
    assert q["utterances"] == 16 and q["frames"] > 0 and Path(q["units_file"]).is_file()
    p = infquery.proba(params, make_ctx("proba", [("quantize", q)]))
    assert p["utterances"] == 16 and p["mean_logprob"] < 0
    lx = infquery.lexical(params, make_ctx("lexical", [("proba", p)]))
    assert lx["pairs"] == 8 and 0 <= lx["lexical_accuracy"] <= 1
    assert Path(lx["lexical_file"]).read_text().startswith("length,pairs,accuracy")
    ab = infquery.abx({**params, "abx_options": {"triplets": 20}}, make_ctx("abx"))
    assert ab["triplets"] == 20 and 0 <= ab["abx_error"] < 0.5 and ab["abx_error_mfcc"] < 0.5


def test_smoke_runs_take_a_few_files(tree: Path, make_ctx: MakeContext) -> None:
    params = {"lang": "en", "model": "baby50", "model_root": str(tree / "models")}
    q = infquery.quantize(params, make_ctx("quantize", smoke=True))
    assert q["utterances"] == infquery.SMOKE_FILES


def test_the_example_schedules_one_chain_per_selected_model(tmp_path: Path) -> None:
    for lang, models in modelroot.DEFAULT_MODELS.items():
        for model in models:
            (tmp_path / "build" / "infquery" / "models" / lang / model).mkdir(parents=True)
    (tmp_path / "examples").mkdir()
    for name in ("infquery.yaml", "infquery_abx.yaml"):
        (tmp_path / "examples" / name).write_text((REPO / "examples" / name).read_text())
    plan = expand(load_spec(tmp_path / "examples" / "infquery.yaml"))
    assert {phase: len(jobs) for phase, jobs in plan.jobs.items()} == {
        "quantize": 7,
        "proba": 7,
        "lexical": 7,
    }
    abx = expand(load_spec(tmp_path / "examples" / "infquery_abx.yaml"))
    assert {phase: len(jobs) for phase, jobs in abx.jobs.items()} == {"quantize": 7, "abx": 7}
