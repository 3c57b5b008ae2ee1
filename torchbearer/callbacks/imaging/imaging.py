"""Imaging callbacks: take an image (or a batch of images) from each step and send it somewhere.

An :class:`ImagingCallback` makes an image in :meth:`~ImagingCallback.on_batch`, optionally caches
and grids it, applies its ``transform`` and hands every selected image to its handlers (files,
pyplot, the state, TensorBoard, visdom). Everything is configured fluently:

    FromState(torchbearer.Y_PRED).on_val().cache(16).make_grid().to_file('pred_{epoch}.png')
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Union

import torch

import torchbearer
from torchbearer.bases import Callback
from torchbearer.callbacks.evaluation import logged_epoch
from torchbearer.distributed import is_rank_zero

ImageHandler = Callable[[torch.Tensor, int, dict], None]
Index = Union[int, Sequence[int], None]


def _import_make_grid() -> Callable[..., torch.Tensor]:
    try:
        from torchvision.utils import make_grid
    except ImportError as error:
        raise ImportError("image grids need torchvision; install it with: pip install torchbearer[imaging]") from error
    return make_grid


def _import_pil_image() -> Any:
    try:
        from PIL import Image
    except ImportError as error:
        raise ImportError("to_file needs Pillow; install it with: pip install torchbearer[imaging]") from error
    return Image


def _import_pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError("to_pyplot needs matplotlib; install it with: pip install torchbearer[imaging]") from error
    return plt


class _FormatFields:
    """Names for ``str.format_map``: ``index``, then metrics, then state keys, read only when referenced.

    Reading just the referenced metric keeps the other (possibly on-device) metric values unconverted.
    """

    def __init__(self, state: dict, index: str) -> None:
        self._state = state
        self._index = index

    def __getitem__(self, name: str) -> Any:
        if name == "index":
            return self._index
        metrics = self._state.get(torchbearer.METRICS) or {}
        if name in metrics:
            return metrics[name]
        try:  # dict.__getitem__: a State would warn about the plain-string lookup
            return dict.__getitem__(self._state, name) if isinstance(self._state, dict) else self._state[name]
        except KeyError:
            raise KeyError(
                f"'{name}' in the file name or title is neither 'index', a metric ({sorted(map(str, metrics))}) "
                "nor a state key"
            ) from None


def identity(image: torch.Tensor) -> torch.Tensor:
    """Return ``image`` unchanged: the default ``transform`` of every imaging callback (as in 0.5)."""
    return image


def _format(pattern: str, state: dict, index: int) -> str:
    return pattern.format_map(_FormatFields(state, str(index)))


def _to_image_array(image: torch.Tensor) -> Any:
    """A ``[C,H,W]`` float image in ``[0, 1]`` as an ``H x W (x C)`` uint8 array for PIL."""
    if image.dim() == 2:
        image = image.unsqueeze(0)
    pixels = image.detach().mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu()
    return pixels[:, :, 0].numpy() if pixels.size(2) == 1 else pixels.numpy()


def _grid(images: torch.Tensor, options: dict) -> torch.Tensor:
    make_grid = _import_make_grid()
    return make_grid(images, **options)


def _grid_options(
    nrow: int, padding: int, normalize: bool, norm_range: Any, scale_each: bool, pad_value: float
) -> dict:
    """``torchvision.utils.make_grid`` keyword arguments (``norm_range`` is its ``value_range``)."""
    return {
        "nrow": nrow,
        "padding": padding,
        "normalize": normalize,
        "value_range": norm_range,
        "scale_each": scale_each,
        "pad_value": pad_value,
    }


def _selected(index: Index, count: int) -> Sequence[int]:
    if index is None:
        return range(count)
    if isinstance(index, int):
        return [index]
    return list(index)


class _ImageCache:
    """Collects the first ``num_images`` images of a pass and returns them once, as one batch."""

    def __init__(self, num_images: int) -> None:
        self.num_images = num_images
        self._parts: list[torch.Tensor] = []
        self._count = 0
        self._emitted = False

    def add(self, images: torch.Tensor, state: dict) -> torch.Tensor | None:
        """Add a batch ``[B,C,H,W]`` or an image ``[C,H,W]``; return the full cache when it first fills."""
        if state.get(torchbearer.BATCH) == 0:  # a new pass starts a new cache
            self._parts, self._count, self._emitted = [], 0, False
        if self._emitted:
            return None
        if images.dim() == 3:
            images = images.unsqueeze(0)
        part = images[: self.num_images - self._count].detach().clone()
        self._parts.append(part)
        self._count += part.size(0)
        if self._count < self.num_images:
            return None
        self._emitted = True
        cache, self._parts = torch.cat(self._parts), []
        return cache


class ImagingCallback(Callback):
    """Base class for callbacks that produce images and send them to handlers.

    Subclasses implement :meth:`on_batch`. Choose when it runs with :meth:`on_train`, :meth:`on_val`
    and :meth:`on_test` (nothing runs until one is chosen), shape its output with :meth:`cache` and
    :meth:`make_grid`, and choose where images go with :meth:`with_handler` and the ``to_*``
    methods. Every configuration method returns ``self``.

    As in 0.5, ``on_train`` / ``on_val`` / ``on_test`` wrap the callback's own ``on_step_training`` /
    ``on_step_validation``: a subclass may define those hooks for its own work, and its images are
    still made, right after its hook returns.

    Args:
        transform: Applied to each produced image (or batch) before the handlers see it; the default,
            :func:`identity`, returns it unchanged.

    Example:
        >>> class Inputs(ImagingCallback):
        ...     def on_batch(self, state):
        ...         return state[torchbearer.X]
        >>> Inputs().on_val().cache(8).make_grid(nrow=4).to_file('inputs_{epoch}.png')  # doctest: +SKIP
    """

    def __init__(self, transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.transform = identity if transform is None else transform
        self._handlers: list[tuple[ImageHandler, Index]] = []
        self._steps: list[Callable[[torch.Tensor, dict], torch.Tensor | None]] = []
        self._eval_data: set[str] = set()
        self._writers: dict[tuple[str, bool], Any] = {}

    def on_batch(self, state: dict) -> torch.Tensor | None:
        """Return an image ``[C,H,W]``, a batch ``[B,C,H,W]`` or ``None`` to skip this step."""
        raise NotImplementedError(f"{type(self).__name__} must implement on_batch(state)")

    def process(self, state: dict) -> None:
        """Make this step's image and hand it to every handler."""
        if not is_rank_zero():  # in a distributed run the images come from rank zero's batches
            return
        image = self.on_batch(state)
        for step in self._steps:
            if image is None:
                return
            image = step(image.detach(), state)
        if image is None:
            return
        image = self.transform(image.detach())
        if image.dim() == 3:
            image = image.unsqueeze(0)
        for handler, index in self._handlers:
            for position in _selected(index, image.size(0)):
                handler(image[position], position, state)

    # When it runs ------------------------------------------------------------------------------

    def on_train(self) -> ImagingCallback:
        """Run after every training step (after the callback's own ``on_step_training``, if it has one)."""
        if "on_step_training" not in vars(self):
            own_hook = self.on_step_training

            def step_then_process(state: dict) -> None:
                own_hook(state)
                self.process(state)

            self.on_step_training = step_then_process
        return self

    def on_val(self) -> ImagingCallback:
        """Run after every validation step (after the callback's own ``on_step_validation``, if any)."""
        return self._on_evaluation(torchbearer.VALIDATION_DATA)

    def on_test(self) -> ImagingCallback:
        """Run after every test step (``evaluate(data_key=TEST_DATA)`` and ``predict``)."""
        return self._on_evaluation(torchbearer.TEST_DATA)

    def _on_evaluation(self, data_key: Any) -> ImagingCallback:
        """Process the steps of ``data_key``'s passes; the first call wraps ``on_step_validation``."""
        if not self._eval_data:
            own_hook = self.on_step_validation

            def step_then_process(state: dict) -> None:
                own_hook(state)
                if str(state[torchbearer.DATA]) in self._eval_data:
                    self.process(state)

            self.on_step_validation = step_then_process
        self._eval_data.add(str(data_key))
        return self

    def on_end(self, state: dict) -> None:
        """Flush the TensorBoard writers this callback opened (kept for the trial's next call, so one event
        file holds all its images) and release its visdom writers."""
        if not self._writers:
            return
        from torchbearer.callbacks.writers import close_writer

        for (log_dir, visdom), writer in list(self._writers.items()):
            if visdom:
                close_writer(log_dir, self)
                del self._writers[(log_dir, visdom)]
            else:
                writer.flush()

    # Shaping the output -------------------------------------------------------------------------

    def cache(self, num_images: int) -> ImagingCallback:
        """Collect the first ``num_images`` images of each pass and emit them once, as one batch."""
        image_cache = _ImageCache(num_images)
        self._steps.append(image_cache.add)
        return self

    def make_grid(
        self,
        nrow: int = 8,
        padding: int = 2,
        normalize: bool = False,
        norm_range: tuple[float, float] | None = None,
        scale_each: bool = False,
        pad_value: float = 0,
    ) -> ImagingCallback:
        """Turn each output batch into one image with ``torchvision.utils.make_grid``.

        Args:
            nrow: Images per row.
            padding: Pixels between images.
            normalize: Shift and scale pixel values into ``[0, 1]``.
            norm_range: ``(min, max)`` used by ``normalize`` (torchvision's ``value_range``); default the data's.
            scale_each: Normalise each image separately.
            pad_value: Value of the padding pixels.
        """
        _import_make_grid()
        options = _grid_options(nrow, padding, normalize, norm_range, scale_each, pad_value)
        self._steps.append(lambda images, state: _grid(images, options))
        return self

    # Where images go ----------------------------------------------------------------------------

    def with_handler(self, handler: ImageHandler, index: Index = None) -> ImagingCallback:
        """Call ``handler(image, index, state)`` for each selected image.

        Args:
            handler: Receives a ``[C,H,W]`` image, its position in the batch and the state.
            index: ``None`` for every image of the batch, an int for one, or a list of positions.
        """
        self._handlers.append((handler, index))
        return self

    def to_file(self, filename: str, index: Index = None) -> ImagingCallback:
        """Save images as files with Pillow (pixel values in ``[0, 1]`` become bytes).

        Args:
            filename: Formatted with ``index``, every metric and every state key, e.g.
                ``'img_{index}_{epoch}.png'``; the extension picks the format.
            index: Which images of the batch (see :meth:`with_handler`).
        """
        image_class = _import_pil_image()

        def handler(image: torch.Tensor, position: int, state: dict) -> None:
            image_class.fromarray(_to_image_array(image)).save(_format(filename, state, position))

        return self.with_handler(handler, index)

    def to_pyplot(self, title: str | None = None, show: bool = True, index: Index = None) -> ImagingCallback:
        """Draw each image in a new pyplot figure (axes hidden).

        Args:
            title: Figure title, formatted like :meth:`to_file` names (``'sample {index}'``).
            show: Call ``plt.show()`` after drawing.
            index: Which images of the batch (see :meth:`with_handler`).
        """
        plt = _import_pyplot()

        def handler(image: torch.Tensor, position: int, state: dict) -> None:
            pixels = image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
            plt.figure()
            if pixels.shape[2] == 1:
                plt.imshow(pixels[:, :, 0], cmap="gray", vmin=0, vmax=1)
            else:
                plt.imshow(pixels)
            plt.axis("off")
            if title is not None:
                plt.title(_format(title, state, position))
            if show:
                plt.show()

        return self.with_handler(handler, index)

    def to_state(self, keys: Any, index: Index = None) -> ImagingCallback:
        """Store images in the state: the n-th selected image goes to ``keys[n]``.

        Args:
            keys: A state key or a list of keys, one per selected image.
            index: Which images of the batch (see :meth:`with_handler`).

        Raises:
            IndexError: At run time, if more images are selected than keys were given.
        """
        keys = list(keys) if isinstance(keys, (list, tuple)) else [keys]

        def handler(image: torch.Tensor, position: int, state: dict) -> None:
            order = position if index is None else (0 if isinstance(index, int) else list(index).index(position))
            if order >= len(keys):
                raise IndexError(
                    f"to_state: image {position} is the number {order + 1} selected but only {len(keys)} "
                    f"key(s) were given ({keys}); give one key per image or select images with index="
                )
            state[keys[order]] = image

        return self.with_handler(handler, index)

    def _writer(self, log_dir: str, visdom: bool, visdom_params: Any) -> Any:
        from torchbearer.callbacks.writers import get_writer

        if (log_dir, visdom) not in self._writers:
            self._writers[(log_dir, visdom)] = get_writer(log_dir, self, visdom=visdom, visdom_params=visdom_params)
        return self._writers[(log_dir, visdom)]

    def to_tensorboard(
        self, name: str = "Image", log_dir: str = "./logs", comment: str = "torchbearer", index: Index = None
    ) -> ImagingCallback:
        """Log images to TensorBoard at ``log_dir/comment``, with the epoch as the step.

        Images of an ``evaluate`` call are logged at the last trained epoch (see
        :func:`~torchbearer.callbacks.evaluation.logged_epoch`). The writer stays open between the trial's
        calls, so one event file holds every image; Python's exit closes it.

        Args:
            name: Image tag, formatted with ``index`` (``'Image {index}'``).
            log_dir: Parent folder of the logs.
            comment: Sub-folder of this run.
            index: Which images of the batch (see :meth:`with_handler`).
        """
        directory = os.path.join(log_dir, comment)

        def handler(image: torch.Tensor, position: int, state: dict) -> None:
            writer = self._writer(directory, False, None)
            writer.add_image(name.format(index=position), image.clamp(0, 1), logged_epoch(state))

        return self.with_handler(handler, index)

    def to_visdom(
        self,
        name: str = "Image",
        log_dir: str = "./logs",
        comment: str = "torchbearer",
        visdom_params: Any = None,
        index: Index = None,
    ) -> ImagingCallback:
        """Send images to visdom; the window is ``name`` (formatted with ``index``) plus ``_<epoch>``.

        Args:
            name: Window name, formatted with ``index``.
            log_dir: Parent folder of the writer's log.
            comment: Sub-folder of this run.
            visdom_params: A ``torchbearer.callbacks.writers.VisdomParams`` (server, port, env...).
            index: Which images of the batch (see :meth:`with_handler`).
        """
        directory = os.path.join(log_dir, comment)

        def handler(image: torch.Tensor, position: int, state: dict) -> None:
            writer = self._writer(directory, True, visdom_params)
            epoch = state[torchbearer.EPOCH]
            writer.add_image(f"{name.format(index=position)}_{epoch}", image.clamp(0, 1), epoch)

        return self.with_handler(handler, index)


class FromState(ImagingCallback):
    """Images read from ``state[key]`` at each step (``None`` when the key is missing).

    Args:
        key: The state key holding an image or a batch of images.
        transform: Applied to each output before the handlers.
        decorator: Wraps :meth:`on_batch`, e.g. ``torchbearer.callbacks.once_per_epoch``.

    Example:
        >>> FromState(torchbearer.Y_PRED).on_val().cache(16).make_grid().to_pyplot()  # doctest: +SKIP
    """

    def __init__(
        self,
        key: str,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        decorator: Callable[[Callable], Callable] | None = None,
    ) -> None:
        super().__init__(transform=transform)
        self.key = key
        if decorator is not None:
            self.on_batch = decorator(self.on_batch)

    def on_batch(self, state: dict) -> torch.Tensor | None:
        return state[self.key] if self.key in state else None


class CachingImagingCallback(FromState):
    """Collects ``num_images`` images from ``state[key]`` each pass, then emits :meth:`on_cache` of them once.

    Args:
        key: The state key holding a batch of images.
        transform: Applied to the output of :meth:`on_cache`.
        num_images: How many images to collect.
    """

    def __init__(
        self,
        key: str = torchbearer.INPUT,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        num_images: int = 16,
    ) -> None:
        super().__init__(key, transform=transform)
        self.num_images = num_images
        self._image_cache = _ImageCache(num_images)

    def on_batch(self, state: dict) -> torch.Tensor | None:
        images = super().on_batch(state)
        if images is None:
            return None
        cache = self._image_cache.add(images, state)
        return None if cache is None else self.on_cache(cache, state)

    def on_cache(self, cache: torch.Tensor, state: dict) -> torch.Tensor | None:
        """Turn the full cache ``[num_images,C,H,W]`` into the image(s) to emit."""
        raise NotImplementedError(f"{type(self).__name__} must implement on_cache(cache, state)")


class MakeGrid(CachingImagingCallback):
    """A grid of the first ``num_images`` images of ``state[key]`` in each pass.

    The grid options are those of :meth:`ImagingCallback.make_grid`.

    Example:
        >>> MakeGrid(torchbearer.INPUT, num_images=64).on_test().to_file('sample.png')  # doctest: +SKIP
    """

    def __init__(
        self,
        key: str = torchbearer.INPUT,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        num_images: int = 16,
        nrow: int = 8,
        padding: int = 2,
        normalize: bool = False,
        norm_range: tuple[float, float] | None = None,
        scale_each: bool = False,
        pad_value: float = 0,
    ) -> None:
        super().__init__(key, transform=transform, num_images=num_images)
        _import_make_grid()
        self._options = _grid_options(nrow, padding, normalize, norm_range, scale_each, pad_value)

    def on_cache(self, cache: torch.Tensor, state: dict) -> torch.Tensor:
        return _grid(cache, self._options)
