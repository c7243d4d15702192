"""The training loader: the same windows as the row-by-row loader it replaced, for any seed and resume point."""

import numpy as np
import pytest
import torch

from training.data import Batches, open_tokens, windows
from training_helpers import write_bin


class RowByRowBatches:
    """The loader before the gathered one: a fresh map per batch, one row at a time."""

    def __init__(self, data, batch_size, context_length, seed):
        self.data, self.batch_size, self.T = data, batch_size, context_length
        self.rng = np.random.default_rng(seed)

    def next(self):
        starts = self.rng.integers(0, self.data.num_tokens - self.T, size=self.batch_size)
        tokens = self.data.tokens()
        xy = torch.from_numpy(np.stack([tokens[s : s + self.T + 1].astype(np.int64) for s in starts]))
        return xy[:, :-1], xy[:, 1:]


@pytest.fixture(params=["uint16", "uint32"])
def token_file(request, tmp_path):
    dtype = request.param
    vocab = 1 << 16 if dtype == "uint16" else (1 << 32) - 1
    # ids across the whole range, so that the widening of the top bit is exercised
    ids = np.random.default_rng(5).integers(0, vocab, size=5000, dtype=np.uint64)
    return open_tokens(write_bin(tmp_path / "train.bin", ids, vocab_size=vocab, dtype=dtype, eot_id=None))


def assert_same(a, b):
    assert a[0].dtype == b[0].dtype == torch.int64
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("seed", [0, 1337])
def test_batches_are_the_row_by_row_loaders_windows_for_the_same_seed(token_file, seed):
    old, new = RowByRowBatches(token_file, 6, 17, seed), Batches(token_file, 6, 17, torch.device("cpu"), seed)
    for _ in range(20):
        assert_same(new.next(), old.next())


def test_a_restored_state_continues_with_the_row_by_row_loaders_windows(token_file):
    old, new = RowByRowBatches(token_file, 4, 9, 3), Batches(token_file, 4, 9, torch.device("cpu"), 3)
    for _ in range(7):
        assert_same(new.next(), old.next())
    saved = new.state()  # the next batch is already built ahead: the state is from before it was drawn
    assert saved == old.rng.bit_generator.state
    expected = [old.next() for _ in range(5)]
    resumed = Batches(token_file, 4, 9, torch.device("cpu"), seed=99)
    resumed.set_state(saved)
    for batch in expected:
        assert_same(resumed.next(), batch)
    new.set_state(saved)  # a state set on a loader with a batch built ahead drops that batch
    for batch in expected:
        assert_same(new.next(), batch)


def test_evaluation_windows_are_the_tokens_at_their_starts(token_file):
    starts = np.array([0, 4000, 17, token_file.num_tokens - 11])
    x, y = windows(token_file, starts, 10, torch.device("cpu"))
    tokens = np.asarray(token_file.tokens()).astype(np.int64)
    for row, s in enumerate(starts):
        assert x[row].tolist() == tokens[s : s + 10].tolist() and y[row].tolist() == tokens[s + 1 : s + 11].tolist()


@pytest.mark.parametrize("dtype,top", [(np.uint16, 0xFFFF), (np.uint32, 0xFFFFFFFF)])
def test_ids_sent_in_their_own_width_are_widened_back_to_the_same_ids(dtype, top):
    from training.data import widen_ids, wire_ids

    ids = np.array([[0, 1, top // 2, top // 2 + 1], [top - 1, top, 12345, 7]], dtype=dtype)
    wire = wire_ids(ids)
    assert wire.element_size() == np.dtype(dtype).itemsize  # what the copy to the device carries
    assert widen_ids(wire).tolist() == ids.astype(np.int64).tolist()
