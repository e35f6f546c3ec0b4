"""ViT zoos: pre-trained vision transformers and their fine-tuned children (lineage).

Two registry names share this package: ``vit-pretrain`` and ``vit-finetune``, the families of
the two groups of a grouped ViT zoo, and ``vit``, the grouped zoo itself. Modules: :mod:`.spec`
(torch-free: the specs, the named zoos, their catalog listings, the architecture presets and
sizes), :mod:`.model` (the ViT), :mod:`.data` (the digits tasks, the SimCLR views, the paper's
data check), :mod:`.train` (population-vectorised pre-training and fine-tuning),
:mod:`.evaluate` (the fine-tuned rows' evaluation task) and :mod:`.family` (the family objects
the registry hands out). Imports point one way: ``spec`` imports no other module of the
package, ``model`` only ``spec``, ``data`` none, and nothing imports ``family``.
"""
