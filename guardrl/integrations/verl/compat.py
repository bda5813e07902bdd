"""Work-arounds for known incompatibilities between the pinned verl (0.9.1) and transformers 5.

Imported in every verl process (listed in ``VERL_USE_EXTERNAL_MODULES`` by
:func:`guardrl.integrations.verl.entry.external_modules`). Each fix is applied only when
the exact broken behaviour is present, and its test (tests/integration/
test_verl_compat.py) fails once verl fixes it upstream, so it can be removed.

1. **Text-only micro-batches of a vision-language model.** verl's
   ``verl.models.transformers.qwen2_vl._get_input_embeds`` runs the vision tower
   on a dummy image when a micro-batch has no image (so every FSDP rank touches
   the vision weights), then calls ``.mean()`` on the tower's output. With
   transformers 5 the tower returns a ``BaseModelOutputWithPooling``, so a
   text-only micro-batch fails with ``AttributeError: 'BaseModelOutputWithPooling'
   object has no attribute 'mean'`` (verl/models/transformers/qwen2_vl.py, the
   "handle mixed text-image data" branch). Mixed text / image RL sets (guardrl's
   default) always produce such micro-batches. The fix wraps that function: for a
   micro-batch with neither images nor videos it does the same dummy pass, unpacking
   the output with verl's own ``unpack_visual_output``; everything else goes to
   verl's function unchanged.
"""

from __future__ import annotations

import functools
import inspect
import logging

log = logging.getLogger(__name__)
_PATCHED_ATTR = "__guardrl_text_only_fix__"


def _needs_text_only_fix(fn) -> bool:
    try:
        src = inspect.getsource(fn)
    except (OSError, TypeError):
        return False
    return "0.0 * image_embeds.mean()" in src and "image_embeds = model.visual(pixel_values, grid_thw" in src


def apply_text_only_fix() -> bool:
    """Wrap verl's Qwen2-VL ``_get_input_embeds`` if it has the text-only bug; return whether it did."""
    try:
        from verl.models.transformers import qwen2_vl
    except ImportError:  # verl not installed: nothing to fix
        return False
    original = qwen2_vl._get_input_embeds
    if getattr(original, _PATCHED_ATTR, False) or not _needs_text_only_fix(original):
        return False

    import torch
    from verl.utils.transformers_compat import unpack_visual_output

    @functools.wraps(original)
    def _get_input_embeds(model, input_ids, attention_mask=None, pixel_values=None, pixel_values_videos=None,
                          image_grid_thw=None, video_grid_thw=None):
        if pixel_values is not None or pixel_values_videos is not None:
            return original(model, input_ids, attention_mask, pixel_values, pixel_values_videos,
                            image_grid_thw, video_grid_thw)
        inputs_embeds = model.get_input_embeddings()(input_ids)
        cfg = model.config.vision_config
        channels = getattr(cfg, "in_channels", None) or cfg.in_chans
        patch_dim = channels * cfg.temporal_patch_size * cfg.patch_size**2
        dummy = torch.zeros((16, patch_dim), dtype=inputs_embeds.dtype, device=inputs_embeds.device)
        grid = torch.tensor([[1, 4, 4]], dtype=torch.long, device=inputs_embeds.device)
        image_embeds, _ = unpack_visual_output(model.visual(dummy, grid_thw=grid))
        inputs_embeds = inputs_embeds + 0.0 * image_embeds.mean()
        if attention_mask is not None:
            attention_mask = attention_mask.to(inputs_embeds.device)
        return inputs_embeds, attention_mask

    setattr(_get_input_embeds, _PATCHED_ATTR, True)
    qwen2_vl._get_input_embeds = _get_input_embeds
    log.info("guardrl: applied the text-only micro-batch fix to verl's qwen2_vl._get_input_embeds")
    return True


apply_text_only_fix()
