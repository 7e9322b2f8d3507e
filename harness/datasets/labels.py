"""IEMOCAP label views: how the emotion labels of each release become mibench classes.

``DataOptions.iemocap_classes`` selects the view:

- ``"4"`` (default): happy, sad, angry, neutral, in the order synth-iemocap uses. In the conversation release
  (6 classes) happy and excited are merged into happy and frustrated utterances are dropped, the usual 5531-
  utterance 4-class set. In the CMU-MultimodalSDK/MulT release each utterance has four one-vs-rest labels;
  the class is the single emotion marked positive. Utterances with no positive emotion or more than one are
  dropped (never assigned by argmax order) and counted in the provenance.
- ``"6"``: happy, sad, neutral, angry, excited, frustrated, the conversation release's own labels 0..5
  (DialogueRNN's order hap, sad, neu, ang, exc, fru). The MulT release has no 6-class labels.
- ``"binary:<emotion>"`` (neutral, happy, sad or angry): a 2-class task ``(not_<emotion>, <emotion>)``. For
  MulT this is its native task for that emotion, on every utterance. For the conversation release it is the
  4-class view (frustrated dropped) read one-vs-rest.

MulT stores labels as (N, 4, 2): for each emotion a one-hot [negative, positive] pair, emotions in the order
neutral, happy, sad, angry (MulT's ``src/eval_metrics.py``). An emotion counts as positive when its positive
entry exceeds its negative one (MulT's argmax, with a tie read as negative).
"""

from __future__ import annotations

import numpy as np

from harness.data import IEMOCAP_VIEWS

EMOTIONS4 = ("happy", "sad", "angry", "neutral")
MULT_EMOTIONS = ("neutral", "happy", "sad", "angry")
DIALOGUE_CLASSES = ("happy", "sad", "neutral", "angry", "excited", "frustrated")
# conversation label 0..5 -> 4-class index (frustrated: -1, dropped)
DIALOGUE_TO_4 = np.array([EMOTIONS4.index(e) for e in ("happy", "sad", "neutral", "angry", "happy")] + [-1])


def classes(view: str) -> tuple[str, ...]:
    """Class names of a view, in class-index order."""
    if view == "4":
        return EMOTIONS4
    if view == "6":
        return DIALOGUE_CLASSES
    if view in IEMOCAP_VIEWS:
        emotion = view.split(":", 1)[1]
        return (f"not_{emotion}", emotion)
    raise ValueError(f"iemocap_classes must be one of {list(IEMOCAP_VIEWS)}, got {view!r}")


def mult_labels(raw: object, view: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """MulT labels (N, 4, 2) [or (N, 4) 0/1] -> (class indices int64 of the kept rows, keep mask bool (N,))."""
    y = np.asarray(raw)
    if y.ndim == 3 and y.shape[1:] == (4, 2):
        positive = y[:, :, 1] > y[:, :, 0]
    elif y.ndim == 2 and y.shape[1] == 4:
        positive = y > 0
    else:
        raise ValueError(f"{where}: expected IEMOCAP labels (N, 4, 2) or (N, 4), got {y.dtype} {y.shape}")
    if not np.issubdtype(y.dtype, np.number) or not np.isin(y, (0, 1)).all():
        raise ValueError(f"{where}: labels out of range: IEMOCAP one-vs-rest labels must be 0 or 1")
    if view == "6":
        raise ValueError(f"{where}: this CMU-MultimodalSDK/MulT IEMOCAP file has four one-vs-rest emotions "
                         f"{list(MULT_EMOTIONS)}, no 6-class labels; use iemocap_classes 4 or binary:<emotion>, or "
                         f"the conversation release (IEMOCAP_features*.pkl) for 6 classes")
    if view.startswith("binary:"):
        column = MULT_EMOTIONS.index(view.split(":", 1)[1])
        return positive[:, column].astype(np.int64), np.ones(len(y), dtype=bool)
    keep = positive.sum(1) == 1
    file_index = positive[keep].argmax(1)
    to4 = np.array([EMOTIONS4.index(e) for e in MULT_EMOTIONS])
    return to4[file_index].astype(np.int64), keep


def dialogue_labels(y6: np.ndarray, view: str) -> tuple[np.ndarray, np.ndarray]:
    """Conversation labels 0..5 (N,) -> (class indices int64 of the kept rows, keep mask bool (N,))."""
    if view == "6":
        return y6.astype(np.int64), np.ones(len(y6), dtype=bool)
    y4 = DIALOGUE_TO_4[y6]
    keep = y4 >= 0
    if view == "4":
        return y4[keep].astype(np.int64), keep
    target = EMOTIONS4.index(view.split(":", 1)[1])
    return (y4[keep] == target).astype(np.int64), keep
