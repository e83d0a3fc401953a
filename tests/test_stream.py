"""The training-batch stream: drawing ahead in a background thread changes no number."""

import pytest
import torch

from multihead_icl.data import PromptSampler, TaskSpec
from multihead_icl.stream import PromptStream, draws_ahead_by_default

FIELDS = ("x", "y", "x_query", "y_query", "coef")
SPEC = TaskSpec(task_dims=(2, 3), noise_std=0.3, signal=(1.0, 2.0), context_length=9, rotate=True)


def batches(ahead, count, seed=0):
    with PromptStream(
        PromptSampler(SPEC), 8, torch.Generator().manual_seed(seed), ahead=ahead
    ) as stream:
        return [stream.next() for _ in range(count)]


def assert_same(a, b):
    for name in FIELDS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_drawing_ahead_gives_exactly_the_foreground_batches():
    ahead, foreground = batches(True, 4), batches(False, 4)
    sampler, gen = PromptSampler(SPEC), torch.Generator().manual_seed(0)
    for a, f in zip(ahead, foreground):
        assert_same(a, f)
        assert_same(a, sampler.sample(8, gen))
    assert not torch.equal(ahead[0].x, ahead[1].x)


@pytest.mark.parametrize("ahead", [True, False])
def test_resume_state_restarts_the_stream_at_the_next_batch(ahead):
    with PromptStream(
        PromptSampler(SPEC), 8, torch.Generator().manual_seed(3), ahead=ahead
    ) as stream:
        for _ in range(3):
            stream.next()
        state = stream.resume_state()
        upcoming = stream.next()
    resumed = PromptSampler(SPEC).sample(8, torch.Generator().set_state(state))
    assert_same(upcoming, resumed)


def test_drawing_thread_takes_one_intra_op_thread_and_gives_it_back():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert draws_ahead_by_default(torch.device("cpu"))
        with PromptStream(PromptSampler(SPEC), 8, torch.Generator(), ahead=True) as stream:
            stream.next()
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        assert not draws_ahead_by_default(torch.device("cpu"))
    finally:
        torch.set_num_threads(before)


class FailingSampler(PromptSampler):
    def draw(self, batch, generator, context_length=None):
        raise RuntimeError("the device ran out of memory")


def test_an_error_in_the_drawing_thread_reaches_the_caller():
    with pytest.raises(RuntimeError, match="out of memory"):
        with PromptStream(FailingSampler(SPEC), 8, torch.Generator(), ahead=True) as stream:
            stream.next()


@pytest.mark.parametrize("ahead", [True, False])
def test_the_stream_refuses_use_outside_its_with_block(ahead):
    # after exit a drawing-ahead stream has drawn one batch it never returned: reading on would skip
    # it
    stream = PromptStream(PromptSampler(SPEC), 8, torch.Generator(), ahead=ahead)
    with pytest.raises(RuntimeError, match="outside its `with` block"):
        stream.next()
    with stream:
        stream.next()
    with pytest.raises(RuntimeError, match="outside its `with` block"):
        stream.resume_state()
