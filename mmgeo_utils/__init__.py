"""mmgeo_utils: the helper package of the MMGeo course.

One module per concern, imported by the numbered notebooks and the ``mmgeo`` CLI:

====================  ==========================================================
``profiles``          the four run sizes (smoke, cpu, gpu, paper)
``repro``             seeding, device, provenance, results files
``plots``             the course's figure style and ``save_fig``
``geometry``          pure plane-geometry constructions
``scene``             the scene language: points, elements, marks, typed facts
``facts``             checking facts against coordinates
``families``          random but valid problem families (the diagram generators)
``captions``          facts → captions in several phrasings, and QA pairs
``layout``            label placement without collisions
``render``            fast matplotlib rendering to PIL images
``dataset``           cached, parallel, byte-deterministic dataset builder
====================  ==========================================================
"""

__version__ = "0.1.0"
