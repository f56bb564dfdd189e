"""A CUDA graph's output vector, copied by the graph itself into pinned host memory.

A host-bound GPU step pays for every torch call in host time, and a call
made right after backward costs several times what it costs in a quiet
loop. Timed there on session 19's H200 (benchmarks/RESULTS.md, section 6):
reading the sentinels' [loss, norm] pair by one `.item()` of a complex view
took 41-53 us, the statistics vector's `.tolist()` and record 67 us, where
the bare loop's own `loss.item()` took 35 us. A `.tolist()` allocates a
host tensor, copies into it and waits; `.item()` dispatches an operator.

So the graph ends with a copy of its output into a pinned host vector (a
memcpy node: no launch of its own), and the step's read is one wait for the
current stream, the step's one sync (torch's sync debug mode counts it),
then numpy's `tolist` of the host vector: no torch operator at all. Quiet,
a replay and read took 10.5 us this way against 16.7 us by `.tolist()`.
The values are the same floats: a float32 widens to a Python float exactly,
NaN and infinity stay as they are.
"""

from __future__ import annotations

import torch

# Dtypes numpy reads as they are (bfloat16 has no numpy dtype).
_READABLE = (torch.float32, torch.float64)
_STREAMS: dict[tuple[int, int], torch.cuda.Stream] = {}  # (device, raw handle) -> its Stream
_STREAMS_KEPT = 64  # a program that makes streams without end does not grow this


class HostCopy:
    """A graph's output `vector` and the pinned host vector each replay copies it into.

    `tolist()` waits for the current stream and reads the host copy: the
    values the last replay on that stream computed. `vector` is the device
    tensor itself (for a read that concatenates more to it); `numel()` is its
    length. Readers take a HostCopy where they take the replay's tensor
    (engine.sentinels.read_values, engine.graphed_stats.GraphedStep).
    """

    __slots__ = ("vector", "host", "_tolist", "_device")

    def __init__(self, vector: torch.Tensor, host: torch.Tensor) -> None:
        self.vector = vector
        self.host = host  # pinned: the graph's copy into it is asynchronous
        self._tolist = host.numpy().tolist
        self._device = vector.device.index

    @staticmethod
    def pinned_for(vector: torch.Tensor) -> torch.Tensor | None:
        """A pinned host twin for `vector` (a graph's output), or None where there is none to make."""
        if vector.dtype not in _READABLE or vector.dim() != 1 or not vector.is_cuda:
            return None
        try:
            return torch.empty(vector.shape, dtype=vector.dtype, pin_memory=True)
        except RuntimeError:  # no pinned memory to be had: the tensor's own read
            return None

    def tolist(self) -> list[float]:
        """The last replay's values: one wait for the current stream, then the host copy read."""
        current_stream(self._device).synchronize()
        return self._tolist()

    def numel(self) -> int:
        """The vector's length."""
        return self.vector.numel()


def current_stream(device: int) -> torch.cuda.Stream:
    """The current CUDA stream of `device`, without building a Stream object each call.

    `torch.cuda.current_stream()` builds one (~5 us quiet, more right after
    backward); the raw handle is one C call, and the Stream made for it is kept.
    """
    stream = _STREAMS.get((device, _raw_stream(device)))
    if stream is None:
        stream = torch.cuda.current_stream(device)
        keep_stream(stream)
    return stream


def keep_stream(stream: torch.cuda.Stream) -> None:
    """Keep `stream` for `current_stream` (a capture keeps the stream its replays will likely run on)."""
    if len(_STREAMS) >= _STREAMS_KEPT:
        _STREAMS.clear()
    _STREAMS[(stream.device.index, stream.cuda_stream)] = stream


def _raw_handle(device: int) -> int:
    return torch.cuda.current_stream(device).cuda_stream


# The current stream's raw handle in one C call where torch has it (a private
# name, hence the fallback: the public call, one Stream object a read).
_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", _raw_handle)


def device_vector(vector):
    """The device tensor of a replay's output: a HostCopy's `vector`, or the tensor itself."""
    return vector.vector if type(vector) is HostCopy else vector
