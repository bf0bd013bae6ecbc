"""README.md's example runs and prints what it promises."""

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_conv_example_gives_the_tutorials_numbers():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    example = next(b for b in blocks if "tinyconv.Conv2d" in b)
    namespace = {}
    exec(compile(example, "README.md", "exec"), namespace)
    # a_{0,0} = 4 and a_{0,1} = 3 (the tutorial's eq. 4.1 example).
    assert namespace["a"][0, 0, 0, 0] == 4 and namespace["a"][0, 0, 0, 1] == 3
    # With δ = 1 everywhere on positive outputs, ∂E/∂w_{m,n} sums the input
    # over the window positions: a 3x3 box sum of the 5x5 image.
    image = namespace["image"][0, 0]
    box = np.array([[image[m:m + 3, n:n + 3].sum() for n in range(3)] for m in range(3)])
    np.testing.assert_array_equal(namespace["conv"].weight.grad[0, 0], box)
    assert namespace["conv"].bias.grad[0] == 9


@pytest.mark.slow
def test_readme_python_training_example_runs(fashion_mnist_dir, tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    example = next(b for b in blocks if "tinyconv.train(" in b)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(example, "README.md", "exec"), namespace)
    # Both ways train LeNet-5 for 2 epochs; each must learn (chance is 10%).
    assert namespace["run"].test.accuracy > 0.8 and namespace["result"].accuracy > 0.8
    assert (tmp_path / "runs" / "lenet5-py" / "model.npz").is_file()
    loaded = namespace["loaded"]
    assert loaded.classes == list(namespace["train_set"].classes)
    for name, value in namespace["model"].state_dict().items():
        np.testing.assert_array_equal(loaded.model.state_dict()[name], value)
