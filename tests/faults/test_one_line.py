"""Bad values on the command line are one line naming the key, exit status 2,
no traceback, nothing on disk (the data-file and run-dir cases live beside their items)."""

import pytest

from jaxconv.train.optim import optax_names

from .conftest import cli, error_lines


@pytest.mark.parametrize(
    "override,line",
    [
        ("seed=-1", "seed (=-1) must be >= 0"),
        ("model.kernel_size=0", "model.kernel_size (=(0,)) must be one int >= 1 per spatial axis"),
        (
            "model.channels=[]",
            "model.channels (=[]) must name at least one layer, each an int >= 1",
        ),
        (
            "model.channels=[0,0,0,0]",
            "model.channels (=[0, 0, 0, 0]) must name at least one layer, each an int >= 1",
        ),
        (
            "+data.options.bogus=1",
            "data.options has 'bogus', which dataset 'mnist1d' does not take; it takes: "
            "num_samples, train_split, template_len, padding, scale_coeff, max_translation, "
            "corr_noise_scale, iid_noise_scale, shear_scale, shuffle_seq, final_seq_length, seed",
        ),
        (
            "+trainer.maxsteps=5",
            "trainer.maxsteps is not a config key (did you mean trainer.max_steps?); "
            "`jaxconv-train --cfg job` prints them all",
        ),
        ("+bogus=1", "bogus is not a config key; `jaxconv-train --cfg job` prints them all"),
        ("data.limit_train=0", "data.limit_train (=0) must be >= 1 or null"),
        (
            "optimizer.name=bogus",
            "optimizer.name (='bogus') is neither a preset ('sgd', 'momentum', 'nesterov', "
            f"'adam', 'adamw') nor an Optax optimizer; Optax has {', '.join(optax_names())}",
        ),
        (
            "+optimizer.epz=1",  # a keyword of optax.adamw misspelt
            "optimizer.epz is not an argument of optax.adamw; it takes b1, b2, eps, eps_root, "
            "mu_dtype, weight_decay, mask, nesterov",
        ),
        (
            "schedule.name=bogus",
            "schedule.name (='bogus') is neither a preset ('constant', 'cosine', "
            "'warmup_cosine', 'one_cycle') nor an Optax schedule; Optax has "
            f"{', '.join(optax_names('schedule'))}",
        ),
        ("optimizer.clip_norm=-1", "optimizer.clip_norm (=-1.0) must be > 0 or null"),
        ("optimizer.lr=inf", "optimizer.lr (=inf) must be a finite number"),
    ],
)
def test_bad_value_is_one_line(tmp_path, override, line):
    proc = cli([override, "trainer.max_steps=2", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert error_lines(proc.stderr) == [f"jaxconv-train: error: {line}"]
    assert "Traceback" not in proc.stderr and "HYDRA_FULL_ERROR" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_default_run_dir_is_removed_with_its_new_parents(tmp_path):
    """Without hydra.run.dir Hydra makes outputs/<model>_<data>/<time>/ before the job
    runs; a refused command removes what it made, and prints nothing but its line."""
    proc = cli(["seed=-1"], cwd=tmp_path)
    assert proc.returncode == 2
    assert error_lines(proc.stderr) == ["jaxconv-train: error: seed (=-1) must be >= 0"], (
        proc.stderr
    )
    assert list(tmp_path.iterdir()) == []
