"""mmgeo_utils: the helper package of the MMGeo course.

One module per concern, imported by the numbered notebooks and the ``mmgeo`` CLI:

=====================  =================================================================  ======
module                 concern                                                            lesson
=====================  =================================================================  ======
``profiles``           the run sizes (smoke, cpu, gpu, paper, colab)                       00
``repro``              seeding, device, provenance, results files                          00
``plots``              the course's figure style and ``save_fig``                           00
``course``             run the notebooks in order (``mmgeo course``)                       00
``geometry``           pure plane-geometry constructions                                   01
``scene``              the scene language: points, elements, marks, typed facts            01
``facts``              checking facts against coordinates                                  01
``families``           random but valid problem families (the diagram generators)          01
``captions``           facts → captions in several phrasings, and QA pairs                 01
``layout``             label placement without collisions                                  01
``render``             fast matplotlib rendering to PIL images                             01
``dataset``            cached, parallel, byte-deterministic dataset builder                01, 02
``bench``              ``mmgeo bench diagrams``, ``negatives`` and ``train``              01, 02, 04
``perturb``            image hard negatives: perturb a scene in exactly one fact           02
``textneg``            text hard negatives by rule, each proved false                      02
``retrieval``          retrieval negatives: sentence embeddings, chunked top-k             02
``contrastive_data``   torch Dataset and collate: positives with their negatives           02
``losses``             CLIP, hard-negative CLIP, MMCLIP, IMC and CMR losses                03
``models``             open_clip models from shipped configs, hub tags or local files      04
``checkpoint``         training state in safetensors (weights, optimizer, RNGs)            04
``distributed``        torchrun/DDP set-up and feature gathering across processes          04
``train``              the training loop (``mmgeo train-clip``)                            04
``evaluate``           fine-grained benchmark, retrieval, probes, robustness               05
``experiments``        CLIP vs MMCLIP over seeds (``mmgeo experiment clip-vs-mmclip``)     05
``ac_score``           alignment (A) and correspondence (C) of vision encoders             05
``cli``                the ``mmgeo`` command line                                          all
=====================  =================================================================  ======
"""

__version__ = "0.1.0"
