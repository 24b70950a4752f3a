"""mura-node: a DICOM network node in front of the screening core (Qt-free, torch-free, opt-in).

A Storage SCP receives studies from the PACS into a spool (:mod:`.spool`, :mod:`.scp`); each
complete study is screened by :func:`desktop.screening.outputs.screen_to_folder`, as
``mura-screen --dicom-out`` would (:mod:`.service`); its SR and SC objects go back through a
persistent outbox and a Storage SCU (:mod:`.outbox`, :mod:`.scu`). :mod:`.config` reads and
checks the TOML configuration, :mod:`.received` lists what was received for the viewer, :mod:`.cli`
is the ``mura-node`` command. Only this package imports pynetdicom, and only when a node starts
or sends: the rest of the app opens no socket.
"""
