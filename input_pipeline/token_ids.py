"""The project's special token ids, which every tokenizer of a decoder maps its own to: padding is 0 (the masks and
the loss read a 0 as no token), then unknown, begin and end of text. models/generation.py repeats the ones it needs
(models import nothing of input_pipeline)."""

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
