"""``fbinfer tune``: precision chosen per backend by measured speed and Rank@1 drift, on the
machine that will run it (``tuner``), over the plans of ``candidates``; the chosen plan is read
back by ``fbinfer.bundle.plan``."""
