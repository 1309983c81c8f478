"""`vaanet model-info`: the summary and per-module parameter counts."""
import re

import torch
from click.testing import CliRunner

from cli import main
from model.config import preset
from model.summary import parameter_counts
from model.vaanet import VAANet

# the authors' audio-visual model with 8 classes (docs/reference.md, "Parameter counts")
OFFICIAL_COUNTS = {"resnet": 85_245_120, "conv0": 1_050_112, "sa_net": 770, "cwa_net": 262_162,
                   "ta_net": 670, "fc": 4_104, "a_resnet": 11_167_552, "a_fc": 131_840,
                   "aa_net": 530, "av_fc": 6_152}


def table(output):
    """{module: (official name, params, trainable)} from the printed table."""
    rows = {}
    for line in output.splitlines():
        m = re.match(r"\s+(\w+)\s+([\w-]+)\s+\w+\s+([\d,]+)\s+([\d,]+)\s", line)
        if m:
            rows[m.group(1)] = (m.group(2), int(m.group(3).replace(",", "")),
                                int(m.group(4).replace(",", "")))
    return rows


def test_official_counts_match_the_authors_code():
    result = CliRunner().invoke(main, ["model-info", "--preset", "official", "--num-classes", "8"])
    assert result.exit_code == 0, result.output
    rows = table(result.output)
    printed = {official: params for official, params, _ in rows.values() if official != "-"}
    assert printed == OFFICIAL_COUNTS
    assert rows["backbone"] == ("resnet", 85_245_120, 0)          # frozen
    assert rows["classifier"][2] == 6_152
    assert "[B, 12, 3, 16, 112, 112]" in result.output and "[B, 16, 256, 32]" in result.output
    assert f"{sum(OFFICIAL_COUNTS.values()):,}" in result.output

    with torch.device("meta"):
        model = VAANet(preset("official", num_classes=8))
    assert parameter_counts(model, official_names=True) == {"-": 0, **OFFICIAL_COUNTS}


def test_ablation_summary_lists_only_present_modules():
    result = CliRunner().invoke(main, ["model-info", "--preset", "demo", "--attn", "vs+vcw"])
    assert result.exit_code == 0, result.output
    rows = table(result.output)
    assert {"backbone", "reduce", "spatial", "channel", "classifier"} <= set(rows)
    assert not {"temporal", "audio_backbone", "audio_temporal", "visual_fc"} & set(rows)
    assert rows["classifier"][1] == 512 * 4 + 4                     # visual only: 512 -> 4
    assert "streams visual" in result.output

    audio = table(CliRunner().invoke(main, ["model-info", "--attn", "AT"]).output)
    assert set(audio) == {"audio_backbone", "audio_embed", "audio_temporal", "classifier"}
    assert audio["classifier"][1] == 256 * 8 + 8                    # audio only: 256 -> 8


def test_model_info_errors():
    result = CliRunner().invoke(main, ["model-info", "--attn", "VS+VCT"])
    assert result.exit_code == 2
    assert "unknown attention 'VCT'" in result.output and "VS, VCW, VT, AT" in result.output
    result = CliRunner().invoke(main, ["model-info", "--attn", "VS+AT", "--streams", "visual"])
    assert result.exit_code == 2 and "AT needs the audio stream" in result.output


def test_demo_counts_the_frozen_3d_resnet_as_train_does():
    from model.build import build_model
    from trainer import run_config
    from trainer.train import model_config_for
    out = CliRunner().invoke(main, ["model-info", "--preset", "demo", "--num-classes", "4"]).output
    total = next(line for line in out.splitlines() if line.strip().startswith("total")).split()
    params, trainable = (int(x.replace(",", "")) for x in total[1:3])
    cfg = model_config_for(run_config.resolve({"preset": "demo", "data": "x"}), ["a", "b", "c", "d"])
    model = build_model(cfg)
    assert trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert params == sum(p.numel() for p in model.parameters()) and trainable < params / 2
