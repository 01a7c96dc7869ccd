# The CI server's master, run by `paytool up` (twistd --nodaemon, its log on stdout, which the
# supervisor keeps). The configuration is master.cfg beside this file.
import os

from buildbot.master import BuildMaster
from twisted.application import service

basedir = os.path.abspath(os.path.dirname(__file__))
# The line upgrade-master looks for, quotes and all.
application = service.Application('buildmaster')
BuildMaster(basedir, "master.cfg", None).setServiceParent(application)
