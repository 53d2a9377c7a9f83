"""``posture demo``: the end-to-end story and its relying party."""
