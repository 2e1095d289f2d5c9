"""refcodec: the PyTorch implementation beside refdec (informative; needs the torch extra).

It trains and integerises the test models, encodes images, decodes them a second time with an
independent integer decoder, generates the conformance vectors and runs the experiments whose
figures are in results/. The modules stay flat, at the paths that committed artefacts record
(``python -m refcodec.integerise`` in the model files, ``refcodec.make_vectors`` in
vectors/manifest.json, the commands of results/, README.md and tools/regenerate.sh); by concern:

the model            model         the float model of spec clause 5.1, its checkpoints
                     train         its training                          python -m refcodec.train
                     integerise    integerisation into a model file      python -m refcodec.integerise
the codec            codec         the encoder: analysis, integer entropy model, range coding
                     refine        the encoder's latent refinement, and its measurement
                                                                         python -m refcodec.refine
the torch decoder    int_decoder   a second integer decoder, written from spec/ alone
                     decode_cli    it as a decoder command of refdec check
                                                                         python -m refcodec.decode_cli
vector generation    make_vectors  the conformance vectors (clause 11.5) python -m refcodec.make_vectors
                     vector_stats  what each vector drives to its limits
experiments          experiment    what they share: images, the float model's operating point,
                                   the anchor codecs, mean curves and BD-rates
                     bdrate        the Bjontegaard delta rate
                     ceiling       where the quality is lost             python -m refcodec.ceiling
                     crossdevice   a float entropy model across devices  python -m refcodec.crossdevice
                     evaluate      the Kodak evaluation and the results page, with the other
                                   experiments' sections                 python -m refcodec.evaluate
commands             options       default files and argument types (standard library only)
                     cli           the refcodec command: encode, decode and the commands above

Imports go one way, with no cycle (tests/test_structure.py, function-level imports included):
options, model, int_decoder and bdrate import no other refcodec module; codec builds on model and
int_decoder; experiment on codec; refine, ceiling and crossdevice on experiment; evaluate on
those three (its page shows their results); cli on the rest. What refcodec's design choices were
measured to gain is in results/design-history.md, the figures of each run in results/.
"""
