"""Named layers, their output shapes and receptive fields.

Layers are the dotted names of ``named_modules()``. For an
:class:`~convscope.models.ImageClassifier` the names are those inside its network
(``blocks.6.0``), and ``network.blocks.6.0`` works too. Unknown names get the closest
matches in the error.

Receptive fields follow the usual arithmetic (Araujo et al. 2019, "Computing receptive
fields of CNNs"): for a conv/pool with effective kernel k, stride s, padding p and an
input field of size r, jump j and start c (centre of the first unit, in input pixels
with pixel centres at 0, 1, ...): r' = r + (k - 1) j, j' = j s, c' = c + ((k - 1)/2 - p) j.
They are computed along the real data flow of one forward pass (a ``TorchFunctionMode``
follows every tensor through convolutions, pooling, explicit padding, residual sums and
concatenations; where branches meet, the larger field wins), so branched networks
(ResNet, EfficientNet, Inception) are handled, not only plain chains.
"""

from __future__ import annotations

__all__ = [
    "canonical_name",
    "check_layers",
    "default_cam_layer",
    "find_layer",
    "first_convolution",
    "HOOK_FREE",
    "LAYER_COLUMNS",
    "layer_at_depth",
    "layers_at_depths",
    "layer_names",
    "layer_table",
    "LayerInfo",
    "receptive_field",
    "ReceptiveField",
    "require_hooks",
    "stage_layers",
]

import difflib
import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .errors import ConvscopeError
from .state import frozen


def _root(model: nn.Module) -> nn.Module:
    return getattr(model, "network", model) if type(model).__name__ == "ImageClassifier" else model


def layer_names(model: nn.Module) -> list[str]:
    """Every addressable layer name (dotted), in definition order."""
    return [name for name, _ in _root(model).named_modules() if name]


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The module called ``name``; a clear error with the closest names if there is none."""
    if isinstance(name, nn.Module):
        return name
    root = _root(model)
    if getattr(root, "hook_free", False):  # a torch.export program: its layers are not modules that run
        require_hooks(root, name)
    modules = dict(root.named_modules())
    key = name.removeprefix("network.") if root is not model else name
    if key in modules and key:
        return modules[key]
    if name in dict(model.named_modules()) and name:
        return dict(model.named_modules())[name]
    known = [n for n in modules if n]
    close = difflib.get_close_matches(name, known, n=4, cutoff=0.6)
    if not close:
        close = [n for n in known if n.startswith(name.rsplit(".", 1)[0])][:4]
    hint = f"; closest: {', '.join(close)}" if close else ""
    raise ConvscopeError(
        f"unknown layer {name!r} in {getattr(model, 'name', type(model).__name__)}{hint} "
        "(list them with: convscope layers MODEL)"
    )


def canonical_name(model: nn.Module, name: str) -> str:
    """The name a layer is listed under in :func:`layer_names`."""
    module = find_layer(model, name)
    for candidate, found in _root(model).named_modules():
        if found is module:
            return candidate
    return name


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of one output unit: ``size`` (pixels), ``jump`` (stride in input
    pixels between neighbouring units) and ``start`` (centre of unit (0, 0) in input pixel
    coordinates), each as (height, width). ``size`` is ``None`` for global layers."""

    size: tuple[float, float] | None
    jump: tuple[float, float]
    start: tuple[float, float]

    def box(self, y: int, x: int, image_size: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
        """(top, left, bottom, right), exclusive, of unit (y, x)'s field; clipped to ``image_size``."""
        if self.size is None:
            return (0, 0, *(image_size or (0, 0)))
        cy, cx = self.start[0] + y * self.jump[0], self.start[1] + x * self.jump[1]
        top, left = round(cy - (self.size[0] - 1) / 2), round(cx - (self.size[1] - 1) / 2)
        bottom, right = top + int(self.size[0]), left + int(self.size[1])
        if image_size is not None:  # clipped, and never empty (a field that falls outside keeps its nearest pixel)
            top, left = min(max(top, 0), image_size[0] - 1), min(max(left, 0), image_size[1] - 1)
            bottom, right = max(min(bottom, image_size[0]), top + 1), max(min(right, image_size[1]), left + 1)
        return top, left, bottom, right


_IDENTITY = ReceptiveField((1.0, 1.0), (1.0, 1.0), (0.0, 0.0))
_GLOBAL = ReceptiveField(None, (0.0, 0.0), (0.0, 0.0))


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)[:2] if len(value) >= 2 else (value[0], value[0])


def _through(field: ReceptiveField, kernel, stride, padding, dilation=1) -> ReceptiveField:
    if field.size is None:
        return field
    kernel, stride, dilation = _pair(kernel), _pair(stride), _pair(dilation)
    padding = (0, 0) if isinstance(padding, str) and padding == "valid" else padding
    if isinstance(padding, str):  # 'same': symmetric padding of (k - 1) / 2 at stride 1
        padding = tuple((dilation[i] * (kernel[i] - 1)) / 2 for i in range(2))
    padding = _pair(padding)
    size, jump, start = [], [], []
    for i in range(2):
        effective = dilation[i] * (kernel[i] - 1) + 1
        size.append(field.size[i] + (effective - 1) * field.jump[i])
        start.append(field.start[i] + ((effective - 1) / 2 - padding[i]) * field.jump[i])
        jump.append(field.jump[i] * stride[i])
    return ReceptiveField(tuple(size), tuple(jump), tuple(start))


def _resized(field: ReceptiveField, before, after, mode: str, align_corners, antialias: bool) -> ReceptiveField:
    """The field through ``F.interpolate`` from ``before`` to ``after`` (H, W). Output pixel i reads
    the input pixels j with |j - x_i| < R around x_i = r (i + 0.5) - 0.5 (r = in / out; r i with
    ``align_corners``), R = 1 for (bi)linear, 2 for bicubic, times r when ``antialias`` shrinks the
    image (PyTorch's kernels): jump r, start offset x_0, and as size the most pixels any output
    reads, so the box is exact for whole-number ratios (ImageClassifier's resize of a fixed-size
    model from 64 or 160 px to 32) and within a pixel otherwise. ``nearest`` reads one pixel."""
    if field.size is None:
        return field
    size, jump, start = [], [], []
    for d in range(2):
        n_in, n_out = before[d], after[d]
        corners = bool(align_corners) and n_out > 1
        ratio = (n_in - 1) / (n_out - 1) if corners else n_in / n_out
        offset = 0.0 if corners else 0.5 * ratio - 0.5
        if mode.startswith("nearest"):
            reads = 1 if ratio == int(ratio) else 2
            offset = 0.0 if mode == "nearest" else offset
        else:
            radius = (2.0 if "cubic" in mode else 1.0) * (ratio if antialias and ratio > 1 else 1.0)
            centres = [offset + ratio * i for i in range(n_out)]
            reads = max(math.ceil(c + radius) - math.floor(c - radius) - 1 for c in centres)
        size.append(field.size[d] + (reads - 1) * field.jump[d])
        start.append(field.start[d] + offset * field.jump[d])
        jump.append(field.jump[d] * ratio)
    return ReceptiveField(tuple(size), tuple(jump), tuple(start))


def _argument(args, kwargs, index, name, default):
    return args[index] if len(args) > index else kwargs.get(name, default)


class _FieldTracer(TorchFunctionMode):
    """Follows receptive fields through every torch function of one forward pass."""

    def __init__(self):
        super().__init__()
        self.fields: dict[int, ReceptiveField] = {}
        self.keep: list[torch.Tensor] = []  # keeps ids unique during the pass
        self.convolutions = 0  # conv2d calls so far in the pass

    def field_of(self, tensor) -> ReceptiveField | None:
        return self.fields.get(id(tensor)) if isinstance(tensor, torch.Tensor) else None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        output = func(*args, **kwargs)
        if getattr(func, "__name__", "") == "conv2d":
            self.convolutions += 1
        inputs = [t for t in _flatten(args) + _flatten(list(kwargs.values())) if isinstance(t, torch.Tensor)]
        known = [f for f in (self.field_of(t) for t in inputs) if f is not None]
        if not known:
            return output
        field = max(known, key=lambda f: float("inf") if f.size is None else f.size[0] * f.size[1])
        name = getattr(func, "__name__", "")
        first = self.field_of(args[0]) if args else None
        if first is not None and name == "conv2d":
            field = _through(
                first,
                args[1].shape[-2:],
                _argument(args, kwargs, 3, "stride", 1),
                _argument(args, kwargs, 4, "padding", 0),
                _argument(args, kwargs, 5, "dilation", 1),
            )
        elif first is not None and name in (
            "max_pool2d",
            "_max_pool2d",
            "max_pool2d_with_indices",
            "avg_pool2d",
            "lp_pool2d",
            "_max_pool2d_with_indices",
        ):
            kernel = _argument(args, kwargs, 1, "kernel_size", 1)
            stride = _argument(args, kwargs, 2, "stride", None) or kernel
            dilation = 1 if name.startswith("avg") else _argument(args, kwargs, 4, "dilation", 1)
            field = _through(first, kernel, stride, _argument(args, kwargs, 3, "padding", 0), dilation)
        elif first is not None and name == "pad":
            pad = _argument(args, kwargs, 1, "pad", ())
            if len(pad) >= 4 and first.size is not None:
                field = ReceptiveField(
                    first.size,
                    first.jump,
                    (first.start[0] - pad[2] * first.jump[0], first.start[1] - pad[0] * first.jump[1]),
                )
        elif (
            first is not None
            and name == "interpolate"
            and isinstance(output, torch.Tensor)
            and output.ndim == 4
            and output.shape[-1] > 1
        ):
            field = _resized(
                first,
                args[0].shape[-2:],
                output.shape[-2:],
                str(_argument(args, kwargs, 3, "mode", "nearest")),
                _argument(args, kwargs, 4, "align_corners", None),
                bool(_argument(args, kwargs, 6, "antialias", False)),
            )
        elif name in (
            "adaptive_avg_pool2d",
            "adaptive_max_pool2d",
            "_adaptive_max_pool2d",
            "linear",
            "mean",
            "amax",
            "sum",
            "flatten",
            "interpolate",
            "upsample_bilinear2d",
        ):
            spatial_in = any(t.ndim == 4 and t.shape[-1] > 1 for t in inputs)
            out = output[0] if isinstance(output, tuple) else output
            if name in ("flatten", "linear") or (
                spatial_in and isinstance(out, torch.Tensor) and (out.ndim < 4 or out.shape[-1] == 1)
            ):
                field = _GLOBAL
        for tensor in _flatten(output if isinstance(output, (tuple, list)) else [output]):
            if isinstance(tensor, torch.Tensor):
                self.fields[id(tensor)] = field
                self.keep.append(tensor)
        return output


def _flatten(items) -> list:
    flat = []
    for item in items:
        flat.extend(_flatten(item) if isinstance(item, (list, tuple)) else [item])
    return flat


@dataclass(frozen=True)
class LayerInfo:
    """One row of the layer map."""

    name: str
    type: str
    output_shape: tuple[int, ...] | None
    receptive_field: ReceptiveField | None
    #: convolutions run from the input to this layer's output (in the forward pass; the last call
    #: for a module called more than once); ``None`` when the layer never runs
    depth: int | None = None

    def cells(self) -> list[str]:
        """The row as text, in :data:`LAYER_COLUMNS` order (the one formatter of the CLI's table,
        the report, the tour's TSV): ``3`` for a square size, ``3x5`` otherwise; ``global``/``-``."""
        shape = "x".join(map(str, self.output_shape)) if self.output_shape else "-"
        field = self.receptive_field
        if field is None:
            rf = ["-", "-", "-"]
        elif field.size is None:
            rf = ["global", "-", "-"]
        else:
            rf = [_pair_text(field.size), _pair_text(field.jump), _pair_text(field.start)]
        return [self.name, self.type, shape, *rf, self.unusable or ""]

    @property
    def unusable(self) -> str | None:
        """Why spatial methods (CAMs, top units, channel visualization, dissection) cannot use
        this layer, or ``None`` when they can: the one place the CLI, the report and the web app read."""
        if self.output_shape is None:
            return "never runs in the forward pass"
        if len(self.output_shape) != 3:
            return f"no spatial map (output {'x'.join(map(str, self.output_shape))})"
        if self.output_shape[-2:] == (1, 1):
            return "no spatial map (1x1 output)"
        if self.receptive_field is None:
            return "not on the image's path"
        return None


#: the columns of :meth:`LayerInfo.cells`
LAYER_COLUMNS = ("layer", "type", "output shape", "RF size", "jump", "start", "unusable for spatial methods")


def _pair_text(pair) -> str:
    text = [f"{v:g}" for v in pair]
    return text[0] if text[0] == text[1] else "x".join(text)


#: what works on a TorchScript or ``torch.export`` program (no hooks needed).
HOOK_FREE = "saliency, input_x_gradient, integrated_gradients, smoothgrad, occlusion and every attack"


def require_hooks(module: nn.Module, name: str = "") -> None:
    """One line instead of TorchScript's "register_forward_hook is not supported on ScriptModules", or
    instead of hooks that never fire in a ``torch.export`` program (its graph runs ATen operations on
    lifted weights, not the modules; :class:`~convscope.models.ExportedNetwork` marks them ``hook_free``)."""
    program = (
        "a TorchScript program"
        if isinstance(module, torch.jit.ScriptModule)
        else "a torch.export program"
        if getattr(module, "hook_free", False)
        else None
    )
    if program is not None:
        raise ConvscopeError(
            f"layer {name or type(module).__name__!r} is inside {program}, which takes no hooks: this method "
            f"needs them. Without hooks work {HOOK_FREE}; for the others load the weights as a state dict with --arch"
        )


def layer_table(
    model: nn.Module, size: int | tuple[int, int] = 224, device: torch.device | str | None = None
) -> list[LayerInfo]:
    """Every layer with its type, output shape (for one image of ``size``) and receptive field.

    The receptive field is reported relative to the model's input image. Layers that do
    not run in the forward pass have no shape.
    """
    height, width = (size, size) if isinstance(size, int) else size
    if device is None:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else "cpu"
    root = _root(model)
    names = {module: name for name, module in root.named_modules() if name}
    shapes: dict[str, tuple[int, ...]] = {}
    fields: dict[str, ReceptiveField] = {}
    depths: dict[str, int] = {}
    tracer = _FieldTracer()

    def record(module, inputs, output):
        name = names.get(module)
        tensor = output[0] if isinstance(output, (tuple, list)) and output else output
        if name is not None and isinstance(tensor, torch.Tensor):
            shapes[name] = tuple(tensor.shape[1:])
            depths[name] = tracer.convolutions
            field = tracer.field_of(tensor)
            if field is not None:
                fields[name] = field

    for module in names:
        require_hooks(module)
    handles = [module.register_forward_hook(record) for module in names]
    x = torch.rand(1, 3, height, width, device=device)
    try:
        with frozen(model), torch.no_grad(), tracer:
            tracer.fields[id(x)] = _IDENTITY
            normalized = x
            tracer.keep.append(x)
            model(normalized)
    except ConvscopeError:
        raise
    except Exception as error:
        if _raised_in_user_hook(model, error, record):  # the user's own hook failed: their error, unchanged
            raise
        raise ConvscopeError(
            f"cannot run {getattr(model, 'name', 'the model')} on a {height}x{width} image: "
            f"{str(error).splitlines()[0]}"
        ) from None
    finally:
        for handle in handles:
            handle.remove()
    return [
        LayerInfo(name, type(module).__name__, shapes.get(name), fields.get(name), depths.get(name))
        for module, name in names.items()
    ]


def receptive_field(model: nn.Module, layer: str, size: int | tuple[int, int] = 224) -> ReceptiveField:
    """Receptive field of ``layer``'s units in the input image."""
    name = canonical_name(model, layer)
    for row in layer_table(model, size):
        if row.name == name:
            if row.receptive_field is None:
                raise ConvscopeError(f"layer {layer!r} does not run on the image path of the forward pass")
            return row.receptive_field
    raise ConvscopeError(f"unknown layer {layer!r}")


def default_cam_layer(model: nn.Module, size: int = 224) -> str:
    """The natural Grad-CAM layer: the last top-level module with a spatial output (H, W > 1),
    descending into ``nn.Sequential`` containers to their last non-pooling spatial child
    (ResNet ``layer4``, VGG ``features.29``, EfficientNet ``bn2``, GoogLeNet ``inception5b``)."""
    rows = {r.name: r for r in layer_table(model, size)}
    modules = dict(_root(model).named_modules())

    def spatial(name: str) -> bool:
        shape = rows[name].output_shape if name in rows else None
        return bool(shape) and len(shape) == 3 and shape[-1] > 1 and shape[-2] > 1 and "Pool" not in rows[name].type

    prefix, chosen = "", None
    while True:
        children = [
            f"{prefix}{child}"
            for child, _ in (modules[prefix.rstrip(".")] if prefix else _root(model)).named_children()
        ]
        candidates = [name for name in children if spatial(name)]
        if not candidates:
            break
        chosen = candidates[-1]
        if not isinstance(modules[chosen], nn.Sequential):
            break
        prefix = chosen + "."
    if chosen is None:
        raise ConvscopeError("the model has no layer with a spatial output; pass layer=...")
    return chosen


_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def stage_layers(model: nn.Module, size: int | tuple[int, int] = 224) -> list[LayerInfo]:
    """The model's stages, in definition order, that spatial methods can use (:attr:`LayerInfo.unusable`):
    the network's children, a container (``nn.Sequential``, ``nn.ModuleList``) replaced by its own
    children (EfficientNet ``conv_stem, bn1, blocks.0 ... blocks.6, conv_head, bn2``; ResNet
    ``conv1 ... maxpool, layer1.0 ... layer4.1``; VGG ``features.0 ... features.30``); while fewer
    than three are usable, every stage with children is replaced by its children."""
    return _stages(model, layer_table(model, size))


def _stages(model: nn.Module, table: list[LayerInfo]) -> list[LayerInfo]:
    rows = {row.name: row for row in table}
    modules = dict(_root(model).named_modules())

    def children(name: str) -> list[str]:
        module = modules[name] if name else _root(model)
        return [f"{name}.{child}" if name else child for child, _ in module.named_children()]

    names = [
        n for child in children("") for n in (children(child) if isinstance(modules[child], _CONTAINERS) else [child])
    ]

    def usable(candidates: list[str]) -> list[LayerInfo]:
        return [rows[n] for n in candidates if n in rows and rows[n].unusable is None]

    while len(usable(names)) < 3 and any(children(n) for n in names):
        names = [n for name in names for n in (children(name) or [name])]
    return usable(names)


def layer_at_depth(model: nn.Module, depth: float, size: int | tuple[int, int] = 224) -> LayerInfo:
    """The stage (:func:`stage_layers`) at relative ``depth`` of the network: 0 is the output of the
    first convolution, 1 that of the last; a stage's depth is the share of the convolutions that run
    before its output (:attr:`LayerInfo.depth`). The stage closest to it wins, the later one on a tie
    (after ``conv_stem`` comes ``bn1``, its normalized output). How the tour, the report and
    ``dream``/``invert`` pick their layers on any CNN: on the embedded EfficientNet-Lite0, depth 0 is
    ``bn1``, 1/3 ``blocks.2``, 1/2 ``blocks.3``, 2/3 ``blocks.4``, 1 ``bn2``; on a ResNet-18
    ``maxpool``, ``layer2.0``, ``layer2.1``, ``layer3.0``, ``layer4.1``."""
    return layers_at_depths(model, [depth], size)[0]


def layers_at_depths(model: nn.Module, depths: Sequence[float], size: int | tuple[int, int] = 224) -> list[LayerInfo]:
    """:func:`layer_at_depth` for several depths, from one pass of the model."""
    table = layer_table(model, size)
    stages = [row for row in _stages(model, table) if row.depth is not None]
    if not stages:
        raise ConvscopeError(
            f"{getattr(model, 'name', type(model).__name__)} has no layer with a spatial output at "
            f"{size} px to choose from (see: convscope layers)"
        )
    total = max(row.depth or 0 for row in table)
    chosen = []
    for depth in depths:
        wanted = 1 + min(max(depth, 0.0), 1.0) * (max(total, 1) - 1)
        closest = min(abs((row.depth or 0) - wanted) for row in stages)
        chosen.append([row for row in stages if abs((row.depth or 0) - wanted) == closest][-1])
    return chosen


def first_convolution(model: nn.Module, size: int | tuple[int, int] = 224) -> str:
    """The first ``nn.Conv2d`` the image meets (EfficientNet ``conv_stem``, ResNet ``conv1``): its
    filters are the ones with a colour meaning."""
    modules = dict(_root(model).named_modules())
    first = [
        row.name for row in layer_table(model, size) if row.depth == 1 and isinstance(modules[row.name], nn.Conv2d)
    ]
    if not first:
        raise ConvscopeError(f"{getattr(model, 'name', type(model).__name__)} runs no nn.Conv2d on the image")
    return first[0]


def check_layers(model: nn.Module, layers: Sequence[str]) -> list[str]:
    """Validate names up front (before any work), returning their canonical form."""
    return [canonical_name(model, layer) for layer in layers]


def _raised_in_user_hook(model: nn.Module, error: BaseException, ours) -> bool:
    """True when ``error`` was raised inside a hook someone else registered on ``model``'s modules."""
    codes = set()
    for module in model.modules():
        for hooks in (module._forward_hooks, module._forward_pre_hooks, module._backward_hooks):
            for hook in hooks.values():
                code = getattr(hook, "__code__", None) or getattr(type(hook).__call__, "__code__", None)
                if code is not None and hook is not ours:
                    codes.add(code)
    trace = error.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code in codes:
            return True
        trace = trace.tb_next
    return False
