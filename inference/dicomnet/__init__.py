"""Lightbox on the hospital network: a DICOM node (pynetdicom), never importing Qt.

- ``config``   the node's settings (AE title, port, bind address, allowed callers, PACS list, priors,
               UID root) in ``<data folder>/dicom.json`` (0600), shared by the app and ``lightbox node``
- ``uids``     UIDs for what Lightbox creates, under this installation's UID root
- ``classify`` which Lightbox modality a DICOM object is (from its header), which transfer syntaxes
               this installation can decode
- ``policy``   who may associate: configured calling AE titles (and hosts), everything else refused
- ``receive``  the Storage SCP's receiving end: checks, atomic writes into ``received/<study>/<series>/``,
               ingestion through the modality readers into the study store, unreadable objects kept
- ``node``     the Storage SCP (C-ECHO, C-STORE) that ``lightbox node`` and the app run
- ``scu``      C-ECHO, C-FIND (study level), C-MOVE, C-GET and C-STORE against a PACS
- ``sendback`` what goes back to PACS: the PDF report as Encapsulated PDF, AI results as a Comprehensive
               SR (TID 1500), heatmap / finding overlays as Secondary Capture
- ``cli``      ``lightbox node | query | retrieve | received``
"""
