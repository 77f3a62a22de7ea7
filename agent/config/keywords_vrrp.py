"""Top-level keywords, global_defs, trackers, sync groups and VRRP instances.

Declared from keepalived 2.2.7's install_keyword() calls (core/global_parser.c,
vrrp/vrrp_parser.c, trackers/track_file.c), plus the later keywords we accept
(``since``).  Defaults are keepalived's when the keyword is absent.
"""

from __future__ import annotations

from .diag import Level
from .schema import BlockSpec, Kw, Script, Str
from .values_vrrp import (
    INT_MAX,
    UINT_MAX,
    AddressLine,
    Bool,
    CpuList,
    Enum,
    GarpExtraIf,
    HmacKey,
    InitFile,
    IpAddr,
    LinkbeatLine,
    LvsSyncDaemon,
    LvsSyncInterface,
    LvsTimeouts,
    McastDst,
    McastGroup,
    Name,
    NameList,
    Notice,
    OptText,
    PeerLine,
    ProcessName,
    Rest,
    RouteLine,
    RtPriority,
    RuleLine,
    RxBufsPolicy,
    SInt,
    SmtpServer,
    Text,
    Timer,
    TrackLine,
    UInt,
    Umask,
    UpDownDelayLine,
    UseIpvlan,
    UseVmac,
    Weight,
    Word,
)

TIMER_HZ = 1_000_000
IFNAMSIZ_MAX = 15      # interface names are at most 15 characters


def _gbool(kw: str) -> Bool:
    """The common global_defs boolean: "Invalid value 'X' for global KW specified"."""
    return Bool(f"Invalid value '{{word}}' for global {kw} specified")


def _ibool(kw: str) -> Bool:
    """The common vrrp_instance boolean: "(VI) invalid KW X specified"."""
    return Bool(f"({{name}}) invalid {kw} {{word}} specified")


def _process_keywords(process: str, *, acted: bool = False) -> tuple[Kw, ...]:
    """vrrp_/checker_/bfd_ scheduling keywords; ``acted``: the process applies them
    (the BFD process does: agent/bfd/realtime.py)."""
    return (
        Kw(f"{process}_priority",
           SInt(-20, 19, error=f"Invalid {process} process priority specified",
                missing=f"No {process} process priority specified"), default=0, acted=acted),
        Kw(f"{process}_no_swap", acted=acted),
        Kw(f"{process}_rt_priority", RtPriority(process), acted=acted),
        Kw(f"{process}_cpu_affinity", CpuList(process), acted=acted),
        Kw(f"{process}_rlimit_rttime",
           UInt(1, UINT_MAX, error=f"Invalid {process} real-time limit - {{word}}"),
           default=10000, aliases=(f"{process}_rlimit_rtime",), acted=acted),
    )


def _rcv_bufs(prefix: str) -> tuple[Kw, ...]:
    return (
        Kw(f"{prefix}_rcv_bufs",
           UInt(0, UINT_MAX, error=f"{prefix}_rcv_bufs size ({{word}}) invalid",
                missing=f"{prefix}_rcv_bufs size missing")),
        Kw(f"{prefix}_rcv_bufs_force", _gbool(f"{prefix}_rcv_bufs_force")),
    )


def _fifo(prefix: str) -> tuple[Kw, ...]:
    return (
        Kw(f"{prefix}notify_fifo",
           Script(missing=f"No {prefix}notify_fifo name specified")),
        Kw(f"{prefix}notify_fifo_script",
           Script(missing=f"No {prefix}notify_fifo_script specified")),
    )


GLOBAL_DEFS = BlockSpec("global_defs", (
    # identity and processes
    Kw("process_names"),
    Kw("process_name", ProcessName()),
    Kw("vrrp_process_name", ProcessName()),
    Kw("checker_process_name", ProcessName(), aliases=("lvs_process_name",)),
    Kw("bfd_process_name", ProcessName()),
    Kw("router_id", Text(missing="routerid name missing - ignoring")),
    Kw("umask", Umask()),
    Kw("random_seed", UInt(0, UINT_MAX, error="random_seed {word} invalid")),
    # e-mail
    Kw("notification_email_from", Text(missing="emailfrom missing - ignoring")),
    Kw("smtp_server", SmtpServer()),
    Kw("smtp_helo_name", OptText()),
    Kw("smtp_connect_timeout",
       UInt(0, UINT_MAX // TIMER_HZ,
            error=f"smtp_connect_timeout '{{word}}' must be in [0, {UINT_MAX // TIMER_HZ}]"
                  " - ignoring",
            zero_to=1,
            zero_error="smtp_conect_timeout must be greater than 0, setting to 1"),
       default=30),
    Kw("notification_email", lines=Word()),
    Kw("smtp_alert", _gbool("smtp_alert")),
    Kw("smtp_alert_vrrp", _gbool("smtp_alert_vrrp")),
    Kw("smtp_alert_checker", _gbool("smtp_alert_checker")),
    Kw("checker_log_all_failures",
       Bool("Invalid value for checker_log_all_failures specified")),
    Kw("no_email_faults"),
    Kw("no_checker_emails", _gbool("no_checker_emails")),
    # scripts
    Kw("startup_script", Script(missing="startup script missing")),
    Kw("startup_script_timeout",
       UInt(1, 1000, error="startup_script_timeout '{word}' must be in [1, 1000] - ignoring",
            missing="startup_script_timeout requires value"), default=10),
    Kw("shutdown_script", Script(missing="shutdown script missing")),
    Kw("shutdown_script_timeout",
       UInt(1, 1000, error="shutdown_script_timeout '{word}' must be in [1, 1000] - ignoring",
            missing="shutdown_script_timeout requires value"), default=10),
    Kw("script_user", Script(max_words=2, missing="No script username specified")),
    Kw("enable_script_security"),
    Kw("use_symlink_paths",
       Bool("Invalid value '{word}' for global use_symlink_path specified"), since="2.3.0"),
    # scheduling
    Kw("max_auto_priority",
       SInt(-1, 99, error="max_auto_priority '{word}' must be in [0, 99] (or -1 to disable)"
                          " - ignoring", bare=99)),
    Kw("min_auto_priority_delay",
       SInt(1, 10000000, error="min_auto_priority_delay '{word}' must be in [1, 10000000]"
                               " - ignoring",
            missing="min_auto_priority_delay requires delay time")),
    *_process_keywords("vrrp"),
    *_process_keywords("checker"),
    *_process_keywords("bfd", acted=True),
    # interfaces
    Kw("dynamic_interfaces",
       Enum(("allow_if_changes",), error="Unknown dynamic_interfaces option '{word}'",
            bare="", fallback="")),
    Kw("default_interface", Text(missing="default_interface requires interface name"),
       default="eth0"),
    Kw("disable_local_igmp"),
    # LVS globals (parsed by global_defs)
    Kw("lvs_timeouts", LvsTimeouts()),
    Kw("lvs_flush"),
    Kw("lvs_flush_on_stop",
       Enum(("VS",), error="Unknown lvs_flush_on_stop type {word}", bare="FULL"),
       aliases=("lvs_flush_onstop",)),
    Kw("lvs_sync_daemon", LvsSyncDaemon()),
    # keepalived-py's own: keepalived deletes a real server dropped by a reload at
    # once (its issue #1228); we give it weight 0 and delete it when its connections
    # are gone or after this many seconds (0: at once)
    Kw("lvs_drain_time", Timer(error="Invalid lvs_drain_time {word} - ignoring"),
       default=60.0, since="keepalived-py",
       doc="seconds a real server removed by a reload drains (keepalived-py)"),
    # VRRP defaults
    Kw("vrrp_mcast_group4", McastGroup(4), default="224.0.0.18"),
    Kw("vrrp_mcast_group6", McastGroup(6), default="ff02::12"),
    Kw("vrrp_garp_master_delay",
       UInt(0, UINT_MAX // TIMER_HZ, error="vrrp_garp_master_delay '{word}' invalid - ignoring"),
       default=5),
    Kw("vrrp_garp_master_repeat",
       UInt(0, UINT_MAX, error="vrrp_garp_master_repeat '{word}' invalid - ignoring",
            zero_to=1,
            zero_error="vrrp_garp_master_repeat must be greater than 0, setting to 1"),
       default=5),
    Kw("vrrp_garp_master_refresh",
       UInt(0, UINT_MAX, error="Invalid vrrp_garp_master_refresh '{word}' - ignoring",
            fallback=0), default=0),
    Kw("vrrp_garp_master_refresh_repeat",
       UInt(0, UINT_MAX, error="vrrp_garp_master_refresh_repeat '{word}' invalid - ignoring",
            zero_to=1,
            zero_error="vrrp_garp_master_refresh_repeat must be greater than 0, setting to 1"),
       default=1),
    Kw("vrrp_garp_lower_prio_delay",
       UInt(0, UINT_MAX // TIMER_HZ,
            error="vrrp_garp_lower_prio_delay '{word}' invalid - ignoring")),
    Kw("vrrp_garp_lower_prio_repeat",
       UInt(0, INT_MAX, error="Invalid vrrp_garp_lower_prio_repeat '{word}'")),
    Kw("vrrp_down_timer_adverts",
       UInt(1, 100, error="Invalid vrrp_down_timer_adverts [1:100] '{word}'"), default=3),
    Kw("vrrp_garp_interval",
       Timer(0.000001, UINT_MAX / TIMER_HZ, error="vrrp_garp_interval '{word}' is invalid"),
       default=0.0),
    Kw("vrrp_gna_interval",
       Timer(0.000001, UINT_MAX / TIMER_HZ, error="vrrp_gna_interval '{word}' is invalid"),
       default=0.0),
    Kw("vrrp_min_garp", Bool("Invalid value for vrrp_min_garp specified")),
    Kw("vrrp_garp_extra_if", GarpExtraIf(lo=1, global_=True, name_prefix=False),
       aliases=("vrrp_vmac_garp_intvl",)),
    Kw("vrrp_lower_prio_no_advert",
       Bool("Invalid value for vrrp_lower_prio_no_advert specified")),
    Kw("vrrp_higher_prio_send_advert",
       Bool("Invalid value for vrrp_higher_prio_send_advert specified")),
    Kw("vrrp_version", UInt(2, 3, error="VRRP Error: Version must be either 2 or 3"),
       default=2),
    Kw("vrrp_check_unicast_src"),
    Kw("vrrp_skip_check_adv_addr"),
    Kw("vrrp_strict"),
    Kw("v3_checksum_as_v2", since="2.2.8"),
    Kw("vrrp_startup_delay",
       Timer(0.001, UINT_MAX / TIMER_HZ, error="vrrp_startup_delay '{word}' is invalid")),
    Kw("vrrp_delay_after_boot",
       Timer(0.001, UINT_MAX / TIMER_HZ, error="vrrp_delay_after_boot '{word}' is invalid"),
       since="2.4.0"),
    Kw("vrrp_owner_ignore_adverts",
       Bool("Invalid value '{word}' for global vrrp_owner_ignore_adverts specified"),
       since="2.3.3"),
    Kw("log_unknown_vrids"),
    Kw("vmac_prefix", Str()),
    Kw("vmac_addr_prefix", Str()),
    Kw("vrrp_rx_bufs_policy", RxBufsPolicy()),
    Kw("vrrp_rx_bufs_multiplier",
       UInt(1, UINT_MAX, error="Invalid vrrp_rx_bufs_multiplier {word}",
            missing="Invalid vrrp_rx_bufs_multiplier", exact=True), default=3),
    # firewall
    # keepalived 2.2.7 as built with nftables (Debian's, our reference) has no
    # vrrp_ipsets keyword and maps vrrp_iptables onto nftables with a complaint
    Kw("vrrp_iptables",
       NameList(2, 29, ("VRRP Error : iptables in chain name too long - ignored",
                        "VRRP Error : iptables out chain name too long - ignored"),
                notice="iptables not supported, using nftables instead. Please replace "
                       "'vrrp_iptables and 'vrrp_ipsets' with 'nftables' config option")),
    Kw("nftables", NameList(1, 32, ("nftables table name too long - ignoring",))),
    Kw("nftables_priority",
       SInt(error="invalid nftables chain priority '{word}'", level=Level.INVALID_NUMBER)),
    Kw("nftables_ifindex"),
    Kw("nftables_ipvs", NameList(1, 32, ("ipvs nftables table name too long - ignoring",))),
    Kw("nftables_ipvs_priority",
       SInt(error="invalid ipvs nftables chain priority '{word}'",
            level=Level.INVALID_NUMBER)),
    Kw("nftables_ipvs_start_fwmark",
       UInt(1, UINT_MAX, error="invalid ipvs nftables start_fwmark priority '{word}'"),
       default=1000),
    Kw("nftables_counters"),
    # notify FIFOs
    *_fifo(""),
    *_fifo("vrrp_"),
    *_fifo("lvs_"),
    Kw("vrrp_notify_priority_changes", _gbool("vrrp_notify_priority_changes")),
    Kw("fifo_write_vrrp_states_on_reload"),
    Kw("rs_init_notifies", _gbool("rs_init_notifies")),
    # SNMP and DBus
    Kw("snmp_socket", Text(missing="SNMP error : snmp socket name missing", maxlen=4095,
                           too_long="SNMP error : snmp socket name too long - ignored")),
    Kw("enable_traps"),
    Kw("enable_snmp_vrrp", aliases=("enable_snmp_keepalived",)),
    Kw("enable_snmp_rfc"),
    Kw("enable_snmp_rfcv2"),
    Kw("enable_snmp_rfcv3"),
    Kw("enable_snmp_checker"),
    Kw("snmp_vs_stats_update_interval",
       Timer(0.001, 30, error="snmp stats vs update interval '{word}' invalid - ignoring"),
       since="2.3.0"),
    Kw("snmp_rs_stats_update_interval",
       Timer(0.001, 30, error="snmp stats rs update interval '{word}' invalid - ignoring"),
       since="2.3.0"),
    Kw("enable_dbus"),
    Kw("dbus_service_name", Text(missing="dbus_service_name missing - ignoring"),
       default="org.keepalived.Vrrp1"),
    Kw("dbus_no_interface_name", Text(missing="dbus_no_interface_name missing - ignoring"),
       since="2.3.0"),
    # netlink buffers
    *_rcv_bufs("vrrp_netlink_cmd"),
    *_rcv_bufs("vrrp_netlink_monitor"),
    *_rcv_bufs("process_monitor"),
    *_rcv_bufs("lvs_netlink_cmd"),
    *_rcv_bufs("lvs_netlink_monitor"),
    # configuration handling
    Kw("reload_check_config", OptText()),
    Kw("reload_time_file", Text(exact=True, invalid="reload_time_file invalid")),
    Kw("reload_repeat"),
    Kw("reload_file", OptText()),
    Kw("include_check", Rest()),
    Kw("config_save_dir", Str()),
    Kw("tmp_config_directory",
       Text(missing="tmp_config_directory missing directory name")),
    Kw("data_use_instance",
       Bool("Invalid value '{word}' for global date_use_instance specified")),
    Kw("iproute_usr_dir", Text(exact=True, invalid="iproute_usr_dir requires path"),
       since="2.3.2"),
    Kw("iproute_etc_dir", Text(exact=True, invalid="iproute_etc_dir requires path"),
       since="2.3.2"),
    # dumps
    Kw("json_version", UInt(1, 2, error="Invalid JSON version",
                            missing="json_version requires version"),
       default=1, since="2.2.8"),
    Kw("state_dump_file", Text(exact=True, nonempty=True,
                               invalid="state_dump_file requires a non-empty path"),
       since="2.3.3"),
    Kw("stats_dump_file", Text(exact=True, nonempty=True,
                               invalid="stats_dump_file requires a non-empty path"),
       since="2.3.3"),
    Kw("json_dump_file", Text(exact=True, nonempty=True,
                              invalid="json_dump_file requires a non-empty path"),
       since="2.3.3"),
))



# -- trackers -----------------------------------------------------------------

TRACK_FILE = BlockSpec("track_file", (
    Kw("file", Text(missing="track file file name missing")),
    Kw("weight",
       Weight(-254, 254,
              error="Weight ({word}) for track_file {name} must be between [-254..254] "
                    "inclusive. Ignoring...",
              option_error="track_file {name} unknown weight option {word}",
              fallback=1, missing="No weight specified for track file {name} - ignoring"),
       default=(1, False)),
    Kw("init_file", InitFile()),
), head=Str())

VRRP_SCRIPT = BlockSpec("vrrp_script", (
    Kw("script", Rest()),
    # 2.2.7 takes whole seconds; 2.3.2 also accepts milliseconds
    Kw("interval",
       UInt(0, UINT_MAX // TIMER_HZ,
            error=f"({{name}}): vrrp script interval '{{word}}' must be between 1 and "
                  f"{UINT_MAX // TIMER_HZ} - ignoring",
            zero_to=1,
            zero_error="({name}): vrrp script interval must be greater than 0, setting to 1"),
       default=1),
    Kw("timeout",
       UInt(0, UINT_MAX // TIMER_HZ,
            error="({name}): vrrp script timeout '{word}' invalid - ignoring", zero_to=1,
            zero_error="({name}): vrrp script timeout must be greater than 0, setting to 1")),
    # keepalived keeps whatever it read even when out of range; we keep 0
    Kw("weight",
       Weight(-253, 253, error="vrrp_script {name} weight {word} must be in [-253, 253]",
              option_error="vrrp_script {name} unknown weight option {word}", fallback=0),
       default=(0, False)),
    Kw("rise",
       UInt(1, INT_MAX, error="({name}): vrrp script rise value '{word}' invalid, "
                              "defaulting to 1", fallback=1), default=1),
    Kw("fall",
       UInt(1, INT_MAX, error="({name}): vrrp script fall value '{word}' invalid, "
                              "defaulting to 1", fallback=1), default=1),
    Kw("user", Script(max_words=2)),
    Kw("init_fail"),
), head=Str())


def _process_delay(prefix: str) -> Timer:
    return Timer(0.000001, 3600,
                 error=f"{prefix}delay ({{word}}) for vrrp_track_process {{name}} must be "
                       "between [0.000001..3600] inclusive. Ignoring...")


VRRP_TRACK_PROCESS = BlockSpec("vrrp_track_process", (
    Kw("process", Rest(1)),
    Kw("param_match", Enum(("initial", "partial"), bare="exact",
                           error="Invalid param_match type {word} - ignoring")),
    Kw("weight",
       Weight(-254, 254,
              error="Weight ({word}) for vrrp_track_process {name} must be between "
                    "[-254..254] inclusive. Ignoring...",
              option_error="vrrp_track_process {name} unknown weight option {word}",
              missing="No weight specified for track process {name} - ignoring"),
       default=(0, False)),
    Kw("quorum",
       UInt(1, 65535, error="Quorum ({word}) for vrrp_track_process {name} must be between "
                            "[1..65535] inclusive. Ignoring..."), default=1),
    Kw("quorum_max",
       UInt(0, 65535, error="quorum_max ({word}) for vrrp_track_process {name} must be "
                            "between [0..65535] inclusive. Ignoring...")),
    Kw("delay", _process_delay("")),
    Kw("terminate_delay", _process_delay("terminate_")),
    Kw("fork_delay", _process_delay("fork_")),
    Kw("full_command"),
), head=Str())


def _track_blocks() -> tuple[Kw, ...]:
    return (
        Kw("track_interface", lines=TrackLine("interface")),
        Kw("track_script", lines=TrackLine("script")),
        Kw("track_file", lines=TrackLine("file")),
        Kw("track_process", lines=TrackLine("process")),
        Kw("track_bfd", lines=TrackLine("bfd")),
    )


def _notify_scripts() -> tuple[Kw, ...]:
    return (
        Kw("notify_backup", Script()),
        Kw("notify_master", Script()),
        Kw("notify_fault", Script()),
        Kw("notify_stop", Script()),
        Kw("notify", Script()),
    )


VRRP_SYNC_GROUP = BlockSpec("vrrp_sync_group", (
    Kw("group", lines=Word()),
    *_track_blocks(),
    *_notify_scripts(),
    Kw("smtp_alert", Bool("Invalid vrrp_group smtp_alert parameter {word}")),
    Kw("global_tracking",
       Notice(("({name}) global_tracking is deprecated. Use track_interface/script/file on "
               "the sync group",))),
    Kw("sync_group_tracking_weight"),
    Kw("notify_priority_changes",
       Bool("({name}) Invalid value '{word}' for sync group notify_priority_changes "
            "specified")),
), head=Name("vrrp_sync_group must have a name - skipping"))

GARP_GROUP = BlockSpec("garp_group", (
    Kw("garp_interval",
       Timer(0, INT_MAX / TIMER_HZ, error="garp_group garp_interval '{word}' invalid")),
    Kw("gna_interval",
       Timer(0, INT_MAX / TIMER_HZ, error="garp_group gna_interval '{word}' invalid")),
    Kw("interface", Str()),
    Kw("interfaces", lines=Word()),
))

TRACK_GROUP = BlockSpec("track_group", (
    Kw("group", lines=Word()),
), head=Name("track_group must have a name - skipping"))

# -- vrrp_instance --------------------------------------------------------------

AUTHENTICATION = BlockSpec("authentication", (
    Kw("auth_type", Enum(("AH", "PASS"),
                         error="({name}) unknown authentication type '{word}'")),
    Kw("auth_pass", Text(maxlen=8, too_long="Truncating auth_pass to 8 characters",
                         truncate=True)),
))

AUTHENTICATION = AUTHENTICATION.acting({"auth_type", "auth_pass"})

AUTH_HMAC = BlockSpec("auth_hmac", (
    Kw("key", HmacKey(), repeat=True, since="2.4.0"),
    Kw("active_key",
       UInt(1, 255, error="({name}) auth_hmac active_key '{word}' must be between 1 and 255"),
       since="2.4.0"),
    Kw("time_window",
       UInt(1, 300, error="({name}) auth_hmac time_window '{word}' must be between 1 and 300"
                          " seconds"), since="2.4.0"),
    Kw("anti_replay",
       Enum(("time", "monotonic"),
            error="({name}) auth_hmac anti_replay '{word}' must be time or monotonic"),
       default="time", since="2.4.0"),
    Kw("mode",
       Enum(("enforce", "permissive", "receive-only"),
            error="({name}) auth_hmac mode '{word}' must be enforce, permissive or "
                  "receive-only"), default="enforce", since="2.4.0"),
))


_SRC_ERROR = ("Configuration error: VRRP instance[{name}] malformed src address[{word}]."
              " Skipping...")

VRRP_INSTANCE = BlockSpec("vrrp_instance", (
    # identity and protocol
    Kw("state", Enum(("MASTER", "BACKUP"),
                     error="({name}) unknown state '{word}', defaulting to BACKUP",
                     fallback="BACKUP")),
    Kw("interface", Text(maxlen=IFNAMSIZ_MAX,
                         too_long="Interface name '{word}' too long - ignoring")),
    Kw("vrf", Text(maxlen=IFNAMSIZ_MAX,
                   too_long="({name}) VRF interface name '{word}' too long - ignoring")),
    Kw("virtual_router_id",
       UInt(1, 255, error="({name}): VRID '{word}' not valid - must be between 1 & 255")),
    Kw("priority",
       UInt(1, 255, error="({name}) Priority not valid! must be between 1 & 255. "
                          "Using default 100", fallback=100), default=100),
    Kw("advert_int",
       Timer(0.01, 255, error="({name}) Advert interval ({word}) not valid! Must be > 0 - "
                              "ignoring"), default=1.0),
    Kw("version", SInt(2, 3, error="({name}): Version must be either 2 or 3")),
    Kw("native_ipv6"),
    Kw("debug", UInt(0, 4, error="({name}) Debug value '{word}' not valid; must be between "
                                 "0-4")),
    Kw("strict_mode", _ibool("strict_mode")),
    Kw("accept"),
    Kw("no_accept"),
    Kw("preempt"),
    Kw("nopreempt"),
    Kw("preempt_delay",
       Timer(0, 1000, error="({name}) Preempt_delay not valid! must be between 0-1000",
             fallback=0.0), default=0.0),
    Kw("skip_check_adv_addr", _ibool("skip_check_adv_addr")),
    Kw("lower_prio_no_advert", _ibool("lower_prio_no_advert")),
    Kw("higher_prio_send_advert", _ibool("higher_prio_send_advert")),
    Kw("down_timer_adverts",
       UInt(1, 100, error="({name}): Invalid down_timer_adverts [1:100] '{word}'"),
       default=3),
    Kw("old_unicast_checksum",
       Enum(("never",), bare="config",
            error="({name}) Unknown old_unicast_chksum mode {word} - ignoring")),
    Kw("kernel_rx_buf_size",
       UInt(0, UINT_MAX, error="({name}) invalid kernel_rx_buf_size specified",
            missing="({name}) invalid kernel_rx_buf_size specified", exact=True)),
    Kw("linkbeat_use_polling",
       Notice(("({name}) 'linkbeat_use_polling' in vrrp instance deprecated - use "
               "linkbeat_interfaces block",))),
    Kw("dont_track_primary"),
    Kw("promote_secondaries"),
    Kw("lvs_sync_daemon_interface", LvsSyncInterface()),
    # addressing
    Kw("mcast_src_ip", IpAddr(_SRC_ERROR)),
    Kw("unicast_src_ip", IpAddr(_SRC_ERROR)),
    Kw("mcast_dst_ip", McastDst()),
    Kw("track_src_ip"),
    Kw("unicast_peer", lines=PeerLine()),
    Kw("unicast_ttl",
       UInt(0, 255, error="({name}): TTL '{word}' not valid - must be between 0 & 255")),
    Kw("unicast_fault_no_peer"),
    Kw("check_unicast_src"),
    # VMAC / ipvlan
    Kw("use_vmac", UseVmac()),
    Kw("use_vmac_addr"),
    Kw("vmac_xmit_base"),
    Kw("use_ipvlan", UseIpvlan()),
    Kw("garp_extra_if", GarpExtraIf(lo=0), aliases=("vmac_garp_intvl",)),
    # gratuitous ARP
    Kw("garp_master_delay",
       UInt(0, UINT_MAX // TIMER_HZ,
            error="({name}): garp_master_delay '{word}' invalid - ignoring")),
    Kw("garp_master_refresh",
       UInt(0, UINT_MAX, error="({name}): Invalid garp_master_refresh '{word}' - ignoring",
            fallback=0)),
    Kw("garp_master_repeat",
       UInt(0, UINT_MAX, error="({name}): garp_master_repeat '{word}' invalid - ignoring",
            zero_to=1,
            zero_error="({name}): garp_master_repeat must be greater than 0, setting to 1")),
    Kw("garp_master_refresh_repeat",
       UInt(0, UINT_MAX,
            error="({name}): garp_master_refresh_repeat '{word}' invalid - ignoring",
            zero_to=1,
            zero_error="({name}): garp_master_refresh_repeat must be greater than 0, "
                       "setting to 1")),
    Kw("garp_lower_prio_delay",
       UInt(0, UINT_MAX // TIMER_HZ,
            error="({name}): garp_lower_prio_delay '{word}' invalid - ignoring")),
    Kw("garp_lower_prio_repeat",
       UInt(0, INT_MAX, error="({name}): Invalid garp_lower_prio_repeat '{word}'")),
    # tracking
    *_track_blocks(),
    # addresses, routes, rules
    Kw("virtual_ipaddress", lines=AddressLine()),
    Kw("virtual_ipaddress_excluded", lines=AddressLine()),
    Kw("virtual_routes", lines=RouteLine()),
    Kw("virtual_rules", lines=RuleLine()),
    # authentication
    Kw("authentication", block=AUTHENTICATION),
    # notification
    *_notify_scripts(),
    Kw("notify_deleted", Script(optional=True)),
    Kw("notify_master_rx_lower_pri", Script()),
    Kw("smtp_alert", Bool("Invalid vrrp_instance smtp_alert parameter {word}")),
    Kw("notify_priority_changes",
       Bool("({name}) Invalid value '{word}' for notify_priority_changes specified")),
    # later versions
    Kw("no_virtual_ipaddress", since="2.2.8"),
    Kw("v3_checksum_as_v2", _ibool("v3_checksum_as_v2"), since="2.2.8"),
    Kw("timer_expired_backup",
       UInt(1, 254, error="({name}) timer_expired_backup highest_other_priority not valid! "
                          "must be between 1 & 254", bare=254),
       aliases=("thread_timer_expired",), since="2.2.8"),
    Kw("owner_ignore_adverts", Bool("({name}) invalid owner_ignore_adverts {word} specified"),
       since="2.3.3"),
    Kw("auth_hmac", block=AUTH_HMAC, since="2.4.0"),
), head=Name("vrrp_instance must have a name"))

# What the VRRP runtime acts on today (agent/vrrp/build.py reads these);
# ``-t`` lists every other keyword it meets as read but not acted on.
VRRP_INSTANCE = VRRP_INSTANCE.acting({
    # trackers, notifications, mail, VMAC (agent/vrrp/tracking_io.py, notify.py, vmac.py)
    "garp_extra_if", "notify", "notify_backup", "notify_deleted", "notify_fault",
    "notify_master", "notify_master_rx_lower_pri", "notify_priority_changes", "notify_stop",
    "promote_secondaries", "smtp_alert", "strict_mode", "track_file", "track_process",
    "track_script", "use_vmac", "use_vmac_addr", "vmac_xmit_base", "vrf",
    "state", "interface", "virtual_router_id", "priority", "advert_int", "version",
    "preempt", "nopreempt", "preempt_delay", "skip_check_adv_addr", "lower_prio_no_advert",
    "higher_prio_send_advert", "down_timer_adverts", "old_unicast_checksum",
    "dont_track_primary", "mcast_src_ip", "unicast_src_ip", "unicast_peer", "unicast_ttl",
    "check_unicast_src", "garp_master_delay", "garp_master_refresh", "garp_master_repeat",
    "garp_master_refresh_repeat", "garp_lower_prio_delay", "garp_lower_prio_repeat",
    "track_interface", "virtual_ipaddress", "virtual_ipaddress_excluded", "virtual_routes",
    "virtual_rules", "authentication", "accept", "no_accept",
})
GLOBAL_DEFS = GLOBAL_DEFS.acting({
    "vrrp_mcast_group4", "vrrp_mcast_group6", "vrrp_garp_master_delay",
    "vrrp_garp_master_repeat", "vrrp_garp_master_refresh", "vrrp_garp_master_refresh_repeat",
    "vrrp_garp_lower_prio_delay", "vrrp_garp_lower_prio_repeat", "vrrp_garp_interval",
    "vrrp_gna_interval", "vrrp_version", "vrrp_check_unicast_src", "vrrp_skip_check_adv_addr",
    "vrrp_higher_prio_send_advert", "vrrp_lower_prio_no_advert", "vrrp_down_timer_adverts",
    # the daemon (agent/core): reloads are checked, dumps go where these say
    "reload_check_config", "state_dump_file", "stats_dump_file", "json_dump_file",
    "data_use_instance",
    # scripts, notify FIFOs, mail, VMAC, the checker process and IPVS
    "default_interface", "disable_local_igmp", "enable_script_security",
    "fifo_write_vrrp_states_on_reload", "lvs_drain_time", "lvs_flush", "lvs_flush_on_stop",
    "lvs_notify_fifo", "lvs_notify_fifo_script", "lvs_sync_daemon", "lvs_timeouts",
    "no_checker_emails", "no_email_faults", "notification_email", "notification_email_from",
    "notify_fifo", "notify_fifo_script", "process_monitor_rcv_bufs",
    "process_monitor_rcv_bufs_force", "router_id", "rs_init_notifies", "script_user",
    "shutdown_script", "shutdown_script_timeout", "smtp_alert", "smtp_alert_checker",
    "smtp_alert_vrrp", "smtp_connect_timeout", "smtp_helo_name", "smtp_server",
    "startup_script", "startup_script_timeout", "umask", "vmac_addr_prefix", "vmac_prefix",
    "vrrp_garp_extra_if", "vrrp_notify_fifo", "vrrp_notify_fifo_script",
    "vrrp_notify_priority_changes", "vrrp_strict",
})
VRRP_SCRIPT = VRRP_SCRIPT.acting_all()
TRACK_FILE = TRACK_FILE.acting_all()
VRRP_TRACK_PROCESS = VRRP_TRACK_PROCESS.acting_all()
GARP_GROUP = GARP_GROUP.acting_all()
TRACK_GROUP = TRACK_GROUP.acting_all()
VRRP_SYNC_GROUP = VRRP_SYNC_GROUP.acting_all({"vrrp_sync_group": {"track_bfd",
                                                                  "global_tracking"}})

# -- the top level --------------------------------------------------------------

VRRP_ROOT_KEYWORDS = (
    Kw("net_namespace", Text(missing="net_namespace name missing - ignoring")),
    Kw("net_namespace_ipvs", OptText()),
    Kw("namespace_with_ipsets"),
    Kw("use_pid_dir"),
    Kw("instance", Text(missing="instance name missing - ignoring")),
    Kw("child_wait_time", UInt(0, UINT_MAX, error="Invalid child_wait_time {word}"),
       default=5),
    Kw("linkbeat_use_polling"),
    Kw("global_defs", block=GLOBAL_DEFS, acted=True),
    Kw("linkbeat_interfaces", lines=LinkbeatLine()),
    Kw("interface_up_down_delays", lines=UpDownDelayLine()),
    Kw("track_group", block=TRACK_GROUP, repeat=True, acted=True),
    Kw("static_ipaddress", lines=AddressLine(static=True), acted=True),
    Kw("static_routes", lines=RouteLine(static=True), acted=True),
    Kw("static_rules", lines=RuleLine(static=True), acted=True),
    Kw("track_file", block=TRACK_FILE, repeat=True, aliases=("vrrp_track_file",), acted=True),
    Kw("vrrp_track_process", block=VRRP_TRACK_PROCESS, repeat=True, acted=True),
    Kw("vrrp_script", block=VRRP_SCRIPT, repeat=True, acted=True),
    Kw("vrrp_sync_group", block=VRRP_SYNC_GROUP, repeat=True, acted=True),
    Kw("garp_group", block=GARP_GROUP, repeat=True, acted=True),
    Kw("vrrp_instance", block=VRRP_INSTANCE, repeat=True, acted=True),
)
