# Install layout and the .deb; included (OPTIONAL) at the end of the top-level CMakeLists.txt.
#
#   cmake --install build --prefix /usr     or     cd build && cpack -G DEB
#
# lays out (PREFIX is /usr for the .deb):
#   PREFIX/bin/docpipe
#   PREFIX/lib/systemd/system/docpipe.service   (ExecStart and --config point at this layout)
#   PREFIX/lib/systemd/system/docpipe-metrics.{socket,service}
#   PREFIX/lib/sysusers.d/docpipe.conf, PREFIX/lib/tmpfiles.d/docpipe.conf
#   /etc/docpipe/docpipe.json                   (PREFIX/etc/docpipe/ for prefixes other than /usr)
#   PREFIX/share/docpipe/prometheus/{prometheus.yml,alerts.yml,alerts_test.yml}
#   PREFIX/share/docpipe/grafana/docpipe-dashboard.json
#   PREFIX/share/docpipe/nats/nats-server-cluster.conf          (examples for several nodes:
#   PREFIX/share/docpipe/nats/nats-server.service.d/docpipe.conf  README.md "Running several
#   PREFIX/share/docpipe/nats/docpipe.service.d/cluster.conf      nodes"; copied by hand)
#   PREFIX/share/docpipe/examples/nightly/*                     (README "Nightly batches")
#   PREFIX/share/docpipe/examples/docpipe.service.d/webhooks.conf (webhooks leave the namespace)
#   PREFIX/share/docpipe/examples/pool_upper.py                (an exec pool converter to copy:
#                                                                docs/design.md "exec pools")
#   PREFIX/share/doc/docpipe/{README.md,copyright,changelog.gz}   (copyright: DEP-5; changelog:
#                                      a native package's, from deploy/debian/changelog)
#   PREFIX/share/man/man1/docpipe.1.gz, PREFIX/share/man/man5/docpipe.json.5.gz   (gzip -9n)
#   PREFIX/share/bash-completion/completions/docpipe
# systemd looks for units, sysusers.d and tmpfiles.d under /usr/lib and /usr/local/lib alike, so
# both the usual prefixes work; those paths are never multiarch, hence the literal "lib".

include(GNUInstallDirs)
set(DOCPIPE_DEPLOY_DIR "${CMAKE_CURRENT_LIST_DIR}")

install(TARGETS docpipe RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# The metrics socket and its proxy into the daemon's private network namespace.
install(FILES "${DOCPIPE_DEPLOY_DIR}/systemd/docpipe-metrics.socket"
              "${DOCPIPE_DEPLOY_DIR}/systemd/docpipe-metrics.service"
        DESTINATION lib/systemd/system)
install(FILES "${DOCPIPE_DEPLOY_DIR}/systemd/docpipe.sysusers" DESTINATION lib/sysusers.d
        RENAME docpipe.conf)
install(FILES "${DOCPIPE_DEPLOY_DIR}/systemd/docpipe.tmpfiles" DESTINATION lib/tmpfiles.d
        RENAME docpipe.conf)
install(FILES "${DOCPIPE_DEPLOY_DIR}/prometheus/prometheus.yml"
              "${DOCPIPE_DEPLOY_DIR}/prometheus/alerts.yml"
              "${DOCPIPE_DEPLOY_DIR}/prometheus/alerts_test.yml"
        DESTINATION ${CMAKE_INSTALL_DATADIR}/docpipe/prometheus)
install(FILES "${DOCPIPE_DEPLOY_DIR}/grafana/docpipe-dashboard.json"
        DESTINATION ${CMAKE_INSTALL_DATADIR}/docpipe/grafana)
# Several nodes: examples only. Debian's nats-server owns /etc/nats-server.conf (a conffile), and
# the drop-ins must be edited and enabled on the hosts that need them, so none goes to /etc or
# to a systemd search path.
install(FILES "${DOCPIPE_DEPLOY_DIR}/nats/nats-server-cluster.conf"
        DESTINATION ${CMAKE_INSTALL_DATADIR}/docpipe/nats)
install(FILES "${DOCPIPE_DEPLOY_DIR}/systemd/nats-server.service.d/docpipe.conf"
        DESTINATION ${CMAKE_INSTALL_DATADIR}/docpipe/nats/nats-server.service.d)
install(FILES "${DOCPIPE_DEPLOY_DIR}/systemd/docpipe.service.d/cluster.conf"
        DESTINATION ${CMAKE_INSTALL_DATADIR}/docpipe/nats/docpipe.service.d)
install(PROGRAMS "${DOCPIPE_DEPLOY_DIR}/examples/pool_upper.py"
        DESTINATION ${CMAKE_INSTALL_DATADIR}/docpipe/examples)
# Nightly batches (README "Nightly batches"): a timer and service that submit a job, the job, and
# the drop-in that lets completion webhooks leave the daemon's network namespace. Examples only:
# they name a user, folders and hosts to edit.
install(FILES "${DOCPIPE_DEPLOY_DIR}/examples/nightly/docpipe-nightly.service"
              "${DOCPIPE_DEPLOY_DIR}/examples/nightly/docpipe-nightly.timer"
              "${DOCPIPE_DEPLOY_DIR}/examples/nightly/reports.json"
        DESTINATION ${CMAKE_INSTALL_DATADIR}/docpipe/examples/nightly)
install(FILES "${DOCPIPE_DEPLOY_DIR}/systemd/docpipe.service.d/webhooks.conf"
        DESTINATION ${CMAKE_INSTALL_DATADIR}/docpipe/examples/docpipe.service.d)
install(FILES "${CMAKE_CURRENT_SOURCE_DIR}/README.md" "${DOCPIPE_DEPLOY_DIR}/debian/copyright"
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
# bash-completion loads completions/NAME on first use of NAME (pkg-config completionsdir).
install(FILES "${DOCPIPE_DEPLOY_DIR}/bash-completion/docpipe"
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions)

# The unit names the binary and the config by absolute path, and the config belongs in /etc
# only under /usr. The prefix is known only at install time (cpack installs with /usr whatever
# CMAKE_INSTALL_PREFIX says), so both are placed by code that runs then. Under /usr the unit is
# installed byte for byte as written.
set(DOCPIPE_INSTALL_CODE [=[
  set(_prefix "${CMAKE_INSTALL_PREFIX}")
  set(_bindir "@CMAKE_INSTALL_BINDIR@")
  set(_docdir "@CMAKE_INSTALL_DOCDIR@")
  foreach(_dir _bindir _docdir)
    if(NOT IS_ABSOLUTE "${${_dir}}")
      set(${_dir} "${_prefix}/${${_dir}}")
    endif()
  endforeach()
  if(_prefix STREQUAL "/usr")
    set(_confdir "/etc/docpipe")
  else()
    set(_confdir "${_prefix}/etc/docpipe")
  endif()

  # Manual pages and the Debian changelog compressed as Debian wants them: gzip -9 without the
  # name and time stamp (-n), so that the same sources give the same bytes (reproducible). The
  # version has no Debian revision (the packaging is part of this source tree: a native
  # package), so the changelog is changelog.gz; changelog.Debian.gz is for a revision's
  # changes on top of an upstream release (lintian: wrong-name-for-changelog-of-native-package).
  set(_mandir "@CMAKE_INSTALL_MANDIR@")
  if(NOT IS_ABSOLUTE "${_mandir}")
    set(_mandir "${_prefix}/${_mandir}")
  endif()
  foreach(_pair "man/docpipe.1;${_mandir}/man1" "man/docpipe.json.5;${_mandir}/man5"
                "debian/changelog;${_docdir}")
    list(GET _pair 0 _source)
    list(GET _pair 1 _dest)
    get_filename_component(_name "${_source}" NAME)
    execute_process(COMMAND gzip -9n -c "@DOCPIPE_DEPLOY_DIR@/${_source}"
                    OUTPUT_FILE "@CMAKE_BINARY_DIR@/deploy/${_name}.gz" RESULT_VARIABLE _rc)
    if(NOT _rc EQUAL 0)
      message(FATAL_ERROR "gzip -9n @DOCPIPE_DEPLOY_DIR@/${_source}: ${_rc}")
    endif()
    file(INSTALL "@CMAKE_BINARY_DIR@/deploy/${_name}.gz" DESTINATION "${_dest}")
  endforeach()

  file(READ "@DOCPIPE_DEPLOY_DIR@/systemd/docpipe.service" _unit)
  string(REPLACE "/usr/bin/docpipe" "${_bindir}/docpipe" _unit "${_unit}")
  string(REPLACE "/etc/docpipe/" "${_confdir}/" _unit "${_unit}")
  string(REPLACE "/usr/share/doc/docpipe/" "${_docdir}/" _unit "${_unit}")
  file(WRITE "@CMAKE_BINARY_DIR@/deploy/docpipe.service" "${_unit}")
  file(INSTALL "@CMAKE_BINARY_DIR@/deploy/docpipe.service"
       DESTINATION "${_prefix}/lib/systemd/system")

  # The operator's config is theirs: a plain `cmake --install` over a live system keeps it (the
  # .deb marks it a conffile, so dpkg asks instead).
  if(NOT "$ENV{DESTDIR}" STREQUAL "" OR NOT EXISTS "${_confdir}/docpipe.json")
    file(INSTALL "@DOCPIPE_DEPLOY_DIR@/config/docpipe.json" DESTINATION "${_confdir}")
  else()
    message(STATUS "Keeping: ${_confdir}/docpipe.json (the shipped default is "
                   "@DOCPIPE_DEPLOY_DIR@/config/docpipe.json)")
  endif()
]=])
string(CONFIGURE "${DOCPIPE_INSTALL_CODE}" DOCPIPE_INSTALL_CODE @ONLY)
install(CODE "${DOCPIPE_INSTALL_CODE}")

# ---- the .deb ----
set(DOCPIPE_PACKAGE_CONTACT "docpipe maintainers <maintainers@docpipe.example.org>"
    CACHE STRING "Maintainer field of the .deb")
# Build folders configured before hold the old default in their cache, which set() keeps;
# lintian rejects it (maintainer-address-is-on-localhost), so it gives way to the new one.
if(DOCPIPE_PACKAGE_CONTACT STREQUAL "docpipe maintainers <root@localhost>")
  set_property(CACHE DOCPIPE_PACKAGE_CONTACT PROPERTY VALUE
               "docpipe maintainers <maintainers@docpipe.example.org>")
endif()
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME docpipe)
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_CONTACT "${DOCPIPE_PACKAGE_CONTACT}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "document batch-processing daemon")
# The summary is the Description line; this is the extended text below it.
# Lines of at most 79 columns, as CPack indents each by one (lintian:
# extended-description-line-too-long past 80).
string(JOIN "\n" CPACK_DEBIAN_PACKAGE_DESCRIPTION
  "docpipe reads batches of documents named by JSON job files, transforms them"
  "(compression, redaction, Markdown, JSON, text extraction from PDF, HTML,"
  "office files and scans, allow-listed commands) and writes the results,"
  "through a bounded concurrent pipeline with a report and a manifest per job."
  "It runs as a sandboxed systemd service and exports Prometheus metrics;"
  "alert rules and a Grafana dashboard are in /usr/share/docpipe.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Depends comes from dpkg-shlibdeps on the binary (dpkg-dev), so it follows what is linked.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# The maintainer scripts call deb-systemd-helper and deb-systemd-invoke (init-system-helpers).
# It is Essential in Debian 12 but need not stay so, hence named; versioned as debhelper names it
# for its own snippets (>= 1.54~), which also keeps lintian's
# depends-on-essential-package-without-using-version quiet. CPack appends dpkg-shlibdeps' list.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "init-system-helpers (>= 1.54~)")
# python3: /usr/share/docpipe/examples/pool_upper.py, an example exec pool converter, runs on it
# (docpipe itself never does; lintian: python3-script-but-no-python3-dep).
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "prometheus, python3")
# Several nodes share work through NATS JetStream; a single node needs no NATS, so no Depends.
# ocr and pdf.text's ocr: "auto" need tesseract's English models (tesseract-ocr-eng); without
# them the daemon runs and those documents fail clearly, so Recommends, not Depends.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "nats-server, tesseract-ocr-eng")
set(CPACK_STRIP_FILES ON)
file(WRITE "${CMAKE_BINARY_DIR}/deploy/conffiles" "/etc/docpipe/docpipe.json\n")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${DOCPIPE_DEPLOY_DIR}/debian/postinst" "${DOCPIPE_DEPLOY_DIR}/debian/prerm"
    "${DOCPIPE_DEPLOY_DIR}/debian/postrm" "${CMAKE_BINARY_DIR}/deploy/conffiles")
# Maintainer scripts 0755 and conffiles 0644, whatever the checkout's modes.
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_VERBATIM_VARIABLES ON)
set(CPACK_SOURCE_GENERATOR TGZ)
set(CPACK_SOURCE_IGNORE_FILES "/\\.git/" "/build[^/]*/" "/var/")
include(CPack)
