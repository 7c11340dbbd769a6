"""mmgeo_utils: the helper package of the MMGeo course.

One sub-package per stage of the data's path through the course; the numbered notebooks and the ``mmgeo``
command line import from them, one level deep (``from mmgeo_utils.clip import train, create_clip``).
Imports only go down this table (``tests/test_package_layout.py`` checks it):

================  ===========================================================================  ======
package / module  stage                                                                        lesson
================  ===========================================================================  ======
``gpu``           can torch use the GPU that ``nvidia-smi`` sees                              00
``profiles``      the run sizes (smoke, cpu, colab, gpu, paper)                                00
``repro``         seeding, device, provenance, atomic writes, results files                    00
``plots``         the course's figure style and ``save_fig``                                    00
``diagrams/``     the scene language, problem families, facts → captions → QA, rendering;     01, 07
                  captions parsed back to facts
``negatives/``    image negatives (a scene perturbed in one fact), rule edits, retrieval      02
``data/``         the cached, byte-deterministic dataset build; reading it; torch datasets    01, 02
``clip/``         open_clip models, the losses, the training loop, evaluation, the AC score   03–05
``lmm/``          a LLaVA-style LMM on a course tower: projector, tokenizer, LM, LoRA stages; 06, 07
                  one LM that embeds and captions (MM-GEM)
``experiments/``  runners: comparisons over seeds, recipe choice on validation, ablations,   01–08
                  benchmarks
``course``        run the notebooks in order (``mmgeo course``)                                all
``cli/``          the ``mmgeo`` command line                                                   all
================  ===========================================================================  ======

Each sub-package's ``__init__`` tables its own modules.
"""

__version__ = "0.1.0"
