"""ViT zoos: pre-trained vision transformers and their fine-tuned children (lineage).

Submodules: :mod:`.family` (the two stages as specs and families) and :mod:`.population`
(population-vectorised pre-training and fine-tuning).
"""
